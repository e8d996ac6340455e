"""A pseudo terminal to render into, its other end read and dropped as a terminal
emulator would: rendering costs what it costs on a real terminal (tty line discipline,
no pipe-buffer stalls), without a screen."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import threading
from typing import Any

ROWS, COLUMNS = 40, 100


class PseudoTerminal:
    def __init__(self, rows: int = ROWS, columns: int = COLUMNS):
        self._master, self._slave = pty.openpty()
        fcntl.ioctl(self._slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.size = (columns, rows)
        self.file = open(self._slave, "w", encoding="utf-8", closefd=False)
        self.received = 0  # bytes the "terminal" read
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._master, 1 << 16)
            except OSError:  # EIO: the other end closed
                return
            if not data:
                return
            self.received += len(data)

    def console(self) -> Any:
        from chatterm.ui.render import make_console

        console = make_console("always", file=self.file)
        console.size = self.size
        return console

    def close(self) -> None:
        self.file.flush()
        self.file.close()
        os.close(self._slave)
        self._reader.join(timeout=5)
        os.close(self._master)

    def __enter__(self) -> PseudoTerminal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
