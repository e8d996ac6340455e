"""Something moves between Enter and the first token: a spinner with what is going on
(reading the prompt and how long it is, a tool running, an alternative being tried)
and the seconds so far, on the line where the reply will start, gone when it starts.
Only on a terminal; one thread while waiting, none while a reply streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
TICK_S = 0.1
QUIET_S = 0.3  # a wait shorter than this shows nothing (no flicker for a cached prompt)


class Spinner:
    def __init__(self, console: Console):
        self.console = console
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def start(self, label: Callable[[], str]) -> None:
        """Spin with `label()` (read at each tick: it may learn the prompt's length)."""
        if not self.console.is_terminal or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._spin, args=(label,), daemon=True, name="chatterm-spinner")
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._drawn:
            self._write("\r\x1b[2K")
            self._drawn = False

    def _spin(self, label: Callable[[], str]) -> None:
        start = time.monotonic()
        if self._stop.wait(QUIET_S):
            return
        frame = 0
        while not self._stop.is_set():
            text = f"{FRAMES[frame % len(FRAMES)]} {label()} · {time.monotonic() - start:.0f} s"
            self._write(f"\r\x1b[2K\x1b[2m{text[:max(10, self.console.width - 1)]}\x1b[0m")
            self._drawn = True
            frame += 1
            self._stop.wait(TICK_S)

    def _write(self, text: str) -> None:
        file = self.console.file
        try:
            file.write(text)
            file.flush()
        except (OSError, ValueError):
            pass
