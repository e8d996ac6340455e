"""Ctrl-C stops a generation, never the program.

While a reply streams, SIGINT only sets a flag that the generation loop checks after
every token, so the engine is never interrupted inside a native call and the partial
reply is kept. A second Ctrl-C before the loop notices raises KeyboardInterrupt, for a
prompt evaluation that takes too long to wait for.

SIGTERM and SIGHUP (the terminal closed) end the chat as Ctrl-D does, and a reply in
progress first as Ctrl-C does: what streamed is kept, marked cut, and saved.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class CancelFlag:
    def __init__(self, then: Callable[[], None] | None = None) -> None:
        """`then`: called when the flag is set (a turn's `cancel`)."""
        self._set = False
        self._then = then

    def __call__(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._then is not None:
            self._then()


@contextmanager
def no_echo() -> Iterator[None]:
    """Keep keys typed during a reply (Ctrl-C's "^C" included) from being echoed into
    the streamed output, where they would shift the live region and corrupt it (a
    line of it stays on the screen, printed twice). The terminal is the first of
    stdin, stdout and stderr that is one: a one-shot answer may have a pipe for stdin."""
    try:
        import termios
        fd = next(s.fileno() for s in (sys.stdin, sys.stdout, sys.stderr) if s is not None and s.isatty())
        saved = termios.tcgetattr(fd)
    except Exception:  # not a terminal, or no termios
        yield
        return
    quiet = list(saved)
    # ISIG on: Ctrl-C must raise SIGINT even if a raw-mode prompt left it off.
    quiet[3] = (quiet[3] & ~(termios.ECHO | termios.ICANON)) | termios.ISIG
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


class Ending(EOFError):
    """SIGTERM or SIGHUP: the chat ends, as at Ctrl-D."""


_streaming: list[CancelFlag] = []  # the cancel flag of the reply streaming now, if any


@contextmanager
def ctrl_c_cancels(then: Callable[[], None] | None = None) -> Iterator[CancelFlag]:
    """While inside, the first Ctrl-C sets the flag yielded (and calls `then`), the
    second raises KeyboardInterrupt."""
    flag = CancelFlag(then)
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_sigint(signum: int, frame: FrameType | None) -> Any:
        if flag():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    _streaming.append(flag)
    try:
        yield flag
    finally:
        _streaming.remove(flag)
        signal.signal(signal.SIGINT, previous)


@contextmanager
def ended_by_signals() -> Iterator[CancelFlag]:
    """While inside: SIGTERM and SIGHUP set the flag yielded; a reply streaming then is
    cancelled (it ends after its next token, kept), otherwise `Ending` is raised.
    After SIGHUP the terminal is gone: its file descriptors are pointed at /dev/null,
    so nothing fails for writing to it."""
    ending = CancelFlag()
    if threading.current_thread() is not threading.main_thread():
        yield ending
        return

    def on_signal(signum: int, frame: FrameType | None) -> Any:
        first = not ending()
        ending.set()
        if signum == signal.SIGHUP:
            _detach_terminal()
        if first and _streaming:
            _streaming[-1].set()
            return
        if _end_prompt():
            return
        raise Ending

    signals = [signal.SIGTERM, signal.SIGHUP]
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        yield ending
    finally:
        for sig in signals:
            signal.signal(sig, previous[sig])


def _end_prompt() -> bool:
    """Whether a prompt is waiting for input: it is told to end with `Ending` (an
    exception raised from here would land in its event loop, which only logs it)."""
    from prompt_toolkit.application import get_app_or_none

    app = get_app_or_none()
    if app is None or not app.is_running or app.loop is None:
        return False

    def end() -> None:
        if not app.is_done:
            app.exit(exception=Ending())

    app.loop.call_soon_threadsafe(end)
    return True


def _detach_terminal() -> None:
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass
