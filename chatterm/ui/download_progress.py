"""How a download shows its progress: a bar with size, speed and time left on a
terminal; on anything else, a plain line now and then (a log stays readable)."""

from __future__ import annotations

import time
from typing import IO, Any

from chatterm.units import duration, size_text

PLAIN_EVERY_S = 5.0


class Bar:
    """rich's progress bar on the terminal (stderr)."""

    def __init__(self, file: IO[str]):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from chatterm.ui import terminal

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=terminal.console(file), transient=False)
        self._task: Any = None

    def start(self, name: str, total: int | None, done: int) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(name, total=total, completed=done)
        else:
            self._progress.reset(self._task, total=total, completed=done, description=name)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None


class Lines:
    """A line every few seconds: done, total, percent, speed, time left."""

    def __init__(self, file: IO[str], every_s: float = PLAIN_EVERY_S):
        self._file, self._every = file, every_s
        self._name, self._done = "", 0
        self._total: int | None = None
        self._started = self._last = 0.0
        self._resumed_at = 0
        self._said = ""

    def start(self, name: str, total: int | None, done: int) -> None:
        self._name, self._total, self._done, self._resumed_at = name, total, done, done
        self._started = self._last = time.monotonic()
        note = f", resuming at {size_text(done)}" if done else ""
        self._line(f"pulling {name} ({size_text(total) if total else 'size unknown'}{note})")

    def advance(self, n: int) -> None:
        self._done += n
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._line(self._status(now))

    def finish(self) -> None:
        if self._name:
            self._line(self._status(time.monotonic()))
            self._name = ""

    def _status(self, now: float) -> str:
        rate = (self._done - self._resumed_at) / max(now - self._started, 1e-6)
        text = f"{self._name}: {size_text(self._done)}"
        if self._total:
            text += f" of {size_text(self._total)} ({100 * self._done // self._total}%)"
        text += f", {size_text(rate)}/s"
        if self._total and rate > 0 and self._done < self._total:
            text += f", {duration((self._total - self._done) / rate)} left"
        return text

    def _line(self, text: str) -> None:
        if text != self._said:
            self._said = text
            print(text, file=self._file, flush=True)


def for_stream(file: IO[str]) -> Bar | Lines:
    return Bar(file) if file.isatty() else Lines(file)
