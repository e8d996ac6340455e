"""Reading files named from outside (attachments, session files) without surprises:
only regular files, their size checked before a byte is read, and never an open that
blocks (a FIFO), never a read that does not end (/dev/zero, a link to it). And writing
chatterm's own files whole or not at all (`write_atomic`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from chatterm.errors import InputError


class RefusedFile(InputError):
    """A path that is not a regular file, or one larger than its limit."""


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def why_unreadable(path: Path) -> str | None:
    """Why `path` is no regular file to read ("no such file", "a symlink loop", "a FIFO
    (named pipe)", ...), or None for a regular file. Nothing is opened."""
    try:
        st = os.stat(path)
    except OSError as e:
        return _os_reason(e)
    return None if stat.S_ISREG(st.st_mode) else kind(st.st_mode)


def open_regular(path: Path, what: str = "file") -> tuple[int, int]:
    """(a file descriptor, the size) of the regular file `path`, opened without
    blocking (RefusedFile for anything else; FileNotFoundError when it is missing).
    The caller closes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise RefusedFile(f"{what} {path}: {_os_reason(e)}") from None
    st = os.fstat(fd)  # of what was opened, not of what the name pointed at before
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RefusedFile(f"{what} {path} is {kind(st.st_mode)}: not read")
    return fd, st.st_size


def read_bytes(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (RefusedFile past
    that, or for anything but a regular file; FileNotFoundError when it is missing)."""
    fd, size = open_regular(path, what)
    try:
        if size > limit:
            raise RefusedFile(f"{what} {path} is {size:,} bytes, more than the {limit:,} read")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise RefusedFile(f"{what} {path} is more than the {limit:,} bytes read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _os_reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a symlink loop"
    if error.errno == errno.ENOENT:
        return "no such file"
    return error.strerror or str(error)


def sha256(path: str | os.PathLike[str], what: str = "file") -> str:
    """The SHA-256 of a regular file, read in 1 MiB chunks (a FIFO or device is refused
    before it is opened for reading)."""
    fd, _ = open_regular(Path(path), what)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(target: Path, data: bytes) -> None:
    """`data` as `target`, whole or not at all: written to a temporary file in the same
    folder, fsynced, renamed over the old file, the folder fsynced; 0600 in a folder
    made 0700 (OSError when it cannot be written)."""
    folder = target.parent
    ensure_private_dir(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_private_dir(folder: Path) -> None:
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
