"""What to run after an engine crash, so the next question is answered without the
user restarting anything.

The ladder: the same engine and settings again (most crashes are one-offs: a driver
fault, memory pressure); safe settings when the crash repeats at the same point (CPU
only, no weight repacking: the paths where native kernels differ most between
machines); then each other engine that may run the file. A crash while loading
climbs at once: loading the same file the same way fails the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

LOADING, PROMPT, GENERATING, IDLE = "loading", "reading the prompt", "generating", "idle"


@dataclass(frozen=True)
class Attempt:
    engine: str
    safe: bool = False

    def says(self, previous: Attempt) -> str:
        if self.engine != previous.engine:
            return f"switching to {self.engine} (safe settings)"
        if self.safe and not previous.safe:
            return "restarting it with safe settings (CPU only, no weight repacking)"
        return "restarting it"


class Recovery:
    def __init__(self, engine: str, others: list[str]):
        self.ladder = [Attempt(engine), Attempt(engine, safe=True), *(Attempt(o, safe=True) for o in others)]
        self.level = 0
        self._last_point: str | None = None

    @property
    def current(self) -> Attempt:
        return self.ladder[self.level]

    def after_crash(self, point: str) -> Attempt | None:
        """The attempt to start after a crash at `point` (one of the phases above), or
        None when the ladder is exhausted."""
        if point == LOADING or point == self._last_point:
            self.level += 1
        self._last_point = point
        return self.ladder[self.level] if self.level < len(self.ladder) else None
