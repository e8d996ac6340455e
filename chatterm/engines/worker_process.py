"""The engine worker as a process: started, framed pipes both ways, stopped or killed.
It knows nothing of requests or crashes (the facade, `isolated.IsolatedEngine`, does):
a closed pipe is `WorkerGone`, and `exit_text` says how the process ended."""

from __future__ import annotations

import select
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO

from chatterm import child, paths
from chatterm.engines import wire
from chatterm.errors import EngineError

POLL_S = 0.05  # how often a wait looks at Ctrl-C and the stop deadline
STOP_GRACE_S = 2.0  # a worker asked to stop that has not stopped by then is killed
LOG_MAX_BYTES = 1 << 20

SIGNAL_HINTS = {
    signal.SIGILL: "illegal instruction: the engine was built for another CPU? "
                   "pip install --force-reinstall --no-cache-dir llama-cpp-python",
    signal.SIGKILL: "killed: out of memory?",
    signal.SIGBUS: "bus error: the model file changed or its disk went away?",
}


class WorkerGone(Exception):
    """The worker's end of the pipe closed (it exited, or was killed)."""


def log_path() -> Path:
    return paths.state_dir() / "engine.log"


def _open_log(header: str) -> IO[bytes] | int:
    """The worker's stderr: the engine log, restarted when it grows past LOG_MAX_BYTES."""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() and path.stat().st_size > LOG_MAX_BYTES:
            path.replace(path.with_suffix(".log.1"))
        log = open(path, "ab")
        log.write(f"\n=== {datetime.now().isoformat(timespec='seconds')} {header}\n".encode())
        log.flush()
        return log
    except OSError:  # an unwritable state folder costs the log, not the chat
        return subprocess.DEVNULL


def exit_text(code: int) -> str:
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"signal {-code}"
        hint = SIGNAL_HINTS.get(sig)
        return f"{sig.name}: {hint}" if hint else sig.name
    return f"exit status {code}"


class WorkerProcess:
    def __init__(self, request: str, log_header: str):
        """Start `chatterm.engines.worker` with its start `request`; its stderr goes to
        the engine log under `log_header`."""
        log = _open_log(log_header)
        try:
            self._proc = subprocess.Popen(
                child.command("chatterm.engines.worker", request),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True)  # the terminal's Ctrl-C is chatterm's to handle, not the worker's
        except OSError as e:
            raise EngineError(f"cannot start the engine worker: {e}") from None
        finally:
            if not isinstance(log, int):
                log.close()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in, self._out = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        self._reader = wire.Reader(self._out)
        self.killed = False  # by chatterm, for not stopping

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def readable(self) -> bool:
        """A frame (or the end of the pipe) waits to be read."""
        return bool(select.select([self._out], [], [], 0)[0])

    def send(self, kind: bytes, payload: bytes) -> None:
        try:
            wire.write_all(self._in, wire.frame(kind, payload))
        except (BrokenPipeError, ConnectionResetError):
            self.drain()
            raise WorkerGone from None

    def receive(self, poll: Callable[[], bool] | None = None) -> tuple[bytes, bytes] | None:
        """The next frame; None once `poll` (called every POLL_S while waiting) says to
        stop waiting."""
        while True:
            frame = self._reader.pop()
            if frame is not None:
                return frame
            readable, _, _ = select.select([self._out], [], [], POLL_S)
            if not readable:
                if poll is not None and poll():
                    return None
                continue
            if not self._reader.fill():
                raise WorkerGone

    def drain(self) -> None:
        """Read to the end of the pipe (what a dying worker still wrote)."""
        while self._reader.fill():
            pass

    def kill(self) -> None:
        self.killed = True
        try:
            self._proc.kill()
        except ProcessLookupError:
            pass

    def kill_after(self, since: float) -> None:
        """Kill a worker that was asked to stop at `since` and has not within
        STOP_GRACE_S (hung in native code): the pipe's next read sees end of file."""
        if time.monotonic() - since > STOP_GRACE_S and not self.killed:
            self.kill()

    def exit_code(self) -> int:
        """Wait for it to end (its pipe closed); one that lingers is killed."""
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its pipe but lingers: finish it, still a crash
            self._proc.kill()
            code = self._proc.wait()
        self.close_pipes()
        return code

    def stop(self) -> None:
        """It was asked to close: wait STOP_GRACE_S, then kill it."""
        try:
            self._proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self._proc.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass
