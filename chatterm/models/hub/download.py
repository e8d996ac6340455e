"""One file from the hub onto disk, never half-written under its final name.

The bytes go to `NAME.<sha256 prefix>.part` beside the final path: a later pull of the
same file resumes it (a part made for other bytes has another name and is discarded), a
dropped connection resumes it at once, a few times. The SHA-256 of the whole file is
checked before the part is renamed (atomically) to its final name."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path
from typing import Protocol

from chatterm.models.hub import client
from chatterm.models.hub.client import HubError, RemoteFile

RETRIES = 5  # dropped connections survived per file, each resumed where it broke
CHUNK = 1 << 20


class Progress(Protocol):
    def start(self, name: str, total: int | None, done: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...


def part_path(final: Path, file: RemoteFile) -> Path:
    tag = (file.sha256 or "unverified")[:12]
    return final.with_name(f"{final.name}.{tag}.part")


def stale_parts(final: Path, keep: Path) -> list[Path]:
    return [p for p in final.parent.glob(f"{final.name}.*.part") if p != keep]


class _Part:
    """The bytes received so far: their count and running SHA-256."""

    def __init__(self, path: Path):
        self.path = path
        self.digest = hashlib.sha256()
        self.done = 0
        if path.exists():
            with open(path, "rb") as f:
                while block := f.read(CHUNK * 8):
                    self.digest.update(block)
                    self.done += len(block)

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.digest, self.done = hashlib.sha256(), 0


def fetch(file: RemoteFile, final: Path, progress: Progress) -> None:
    """Download `file` to `final`, resuming a part left by an earlier try."""
    final.parent.mkdir(parents=True, exist_ok=True)
    path = part_path(final, file)
    for old in stale_parts(final, path):
        old.unlink(missing_ok=True)  # made for bytes the hub no longer has
    part = _Part(path)
    if file.size is not None and part.done > file.size:
        part.restart()
    progress.start(final.name, file.size, part.done)
    try:
        failures = 0
        while file.size is None or part.done < file.size:
            before = part.done
            try:
                _receive(file, part, progress)
                if file.size is None:
                    break
            except Exception as e:
                if not _is_transport_error(e):
                    raise
                failures = 0 if part.done > before else failures + 1
                if failures > RETRIES:
                    raise HubError(f"the connection to {client.endpoint()} keeps failing "
                                   f"({_why(e)}); {_kept(part)}") from None
                time.sleep(min(2 ** failures, 16) / 8)
    finally:
        progress.finish()
    _verify_and_place(file, part, final)


def _receive(file: RemoteFile, part: _Part, progress: Progress) -> None:
    with client.stream(file, part.done) as (chunks, begins_at):
        if begins_at != part.done:  # the server sent the whole file: start the part again
            part.restart()
            progress.start(part.path.name, file.size, 0)
        try:
            with open(part.path, "ab") as out:
                for chunk in chunks:
                    out.write(chunk)
                    part.digest.update(chunk)
                    part.done += len(chunk)
                    progress.advance(len(chunk))
                    if file.size is not None and part.done > file.size:
                        raise HubError(f"{file.repo}/{file.name}: the hub sent more than its "
                                       f"{file.size:,} bytes")
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise HubError(f"disk full writing {part.path}: {_kept(part)} once there is space") from None
            raise HubError(f"cannot write {part.path}: {e.strerror}") from None


def _verify_and_place(file: RemoteFile, part: _Part, final: Path) -> None:
    if file.size is not None and part.done != file.size:
        raise HubError(f"{file.name}: got {part.done:,} of {file.size:,} bytes; {_kept(part)}")
    actual = part.digest.hexdigest()
    if file.sha256 and actual != file.sha256:
        part.path.unlink(missing_ok=True)
        raise HubError(f"{file.name} is corrupt: its SHA-256 is {actual[:16]}…, expected "
                       f"{file.sha256[:16]}…; the download was deleted, pull again")
    os.replace(part.path, final)
    _sync_dir(final.parent)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kept(part: _Part) -> str:
    return (f"{part.done:,} bytes kept in {part.path.name}; the same pull resumes there"
            if part.done else "nothing was kept")


def _is_transport_error(e: BaseException) -> bool:
    import httpx

    return isinstance(e, (httpx.TransportError, ConnectionError, TimeoutError))


def _why(e: BaseException) -> str:
    return " ".join(str(e).split())[:120] or type(e).__name__
