"""Ctrl-C stops a generation, never the program.

While a reply streams, SIGINT only sets a flag that the generation loop checks after
every token, so the engine is never interrupted inside a native call and the partial
reply is kept. A second Ctrl-C before the loop notices raises KeyboardInterrupt, for a
prompt evaluation that takes too long to wait for.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Iterator
from contextlib import contextmanager


class CancelFlag:
    def __init__(self) -> None:
        self._set = False

    def __call__(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True


@contextmanager
def no_echo() -> Iterator[None]:
    """Keep keys typed during a reply (Ctrl-C's "^C" included) from being echoed into
    the streamed output, where they would shift the live region and corrupt it."""
    import sys
    try:
        import termios
        fd = sys.stdin.fileno()
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


@contextmanager
def ctrl_c_cancels() -> Iterator[CancelFlag]:
    flag = CancelFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_sigint(signum: int, frame: FrameType | None) -> Any:
        if flag():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
