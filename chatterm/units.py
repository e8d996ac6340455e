"""Numbers for people: byte counts in decimal units (as disks, the hub and `ls -lh
--si` count them), counts with their nouns, durations."""

from __future__ import annotations


def size_text(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """"1 file", "2 files": a number with its noun in the number it takes."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def duration(seconds: float) -> str:
    """"41 s", "1 min 05 s", "2 h 03 min"."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s // 60 % 60:02d} min"
