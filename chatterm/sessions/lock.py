"""One writer per session: a chat holds an exclusive lock on the session it has open
(`flock` on a file of its own beside the sessions), so a second chat on the same
session learns of it at once instead of each saving its own copy over the other's.

The lock is the kernel's: it goes with the process however that ends (kill -9
included), so a stale lock cannot exist. Lock files are never removed: removing one
another process has just opened would let two writers in.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from chatterm.sessions import ensure_private_dir


class SessionLock:
    def __init__(self, fd: int | None):
        self._fd = fd

    @classmethod
    def take(cls, session_file: Path) -> SessionLock | int:
        """The lock of the session in `session_file`, or the pid of the chat holding it
        (0 when unknown). Where no lock can be made (a read-only folder), an empty lock:
        saving will fail there, and say so."""
        folder = session_file.parent / ".locks"
        try:
            ensure_private_dir(session_file.parent)
            ensure_private_dir(folder)
            fd = os.open(folder / f"{session_file.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return cls(None)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            return holder
        except OSError:  # a file system without locks
            os.close(fd)
            return cls(None)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the lock holds without the pid
        return cls(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # at interpreter exit, when os may be gone: the kernel releases it anyway
            pass


def _pid_in(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0
