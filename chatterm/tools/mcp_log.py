"""The MCP log: what stdio servers write on stderr and what the SDK complains of, kept
off the chat's terminal and bounded. The file is cut over to `mcp.log.1` past
FILE_CAP bytes (one old file kept), and a server that writes more than RUN_CAP in one
run has the rest read and dropped, said once: a server flooding stderr costs the
disk nothing more."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import IO

FILE_CAP = 1 << 20  # bytes of mcp.log before it is cut over to mcp.log.1
RUN_CAP = 4 << 20  # bytes of one server run's stderr kept


class CappedLog:
    def __init__(self, path: Path | None):
        """`path` None: everything is dropped (the state folder cannot be made)."""
        self.path = path
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        if self.path is None or not data:
            return
        with self._lock:
            try:
                if self.path.exists() and self.path.stat().st_size + len(data) > FILE_CAP:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, data[:FILE_CAP])
                finally:
                    os.close(fd)
            except OSError:
                pass  # a log that cannot be written is no reason to stop a server

    def stderr_for(self, server: str) -> IO[str]:
        """A file to give server `server` as its stderr: its lines reach the log,
        prefixed with its name, up to RUN_CAP bytes; the rest is read and dropped."""
        read_end, write_end = os.pipe()
        threading.Thread(target=self._copy, args=(read_end, server), name=f"chatterm-mcp-log-{server}",
                         daemon=True).start()
        return os.fdopen(write_end, "w")

    def _copy(self, fd: int, server: str) -> None:
        prefix, kept, told = f"[{server}] ".encode("utf-8", "replace"), 0, False
        pending = b""
        try:
            while chunk := os.read(fd, 1 << 16):
                if kept >= RUN_CAP:
                    if not told:
                        told = True
                        self.write(prefix + f"more than {RUN_CAP >> 20} MiB on stderr: the rest is dropped\n".encode())
                    continue
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()[-4096:]
                if lines:
                    data = b"".join(prefix + line[:4096] + b"\n" for line in lines)
                    kept += len(data)
                    self.write(data)
        except OSError:
            pass
        finally:
            if pending and kept < RUN_CAP:
                self.write(prefix + pending + b"\n")
            os.close(fd)


class LogHandler(logging.Handler):
    """The SDK's log records into the capped log."""

    def __init__(self, log: CappedLog):
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.write((self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:  # logging must never break the chat
            pass
