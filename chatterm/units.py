"""Byte counts for people: decimal units, as disks, the hub and `ls -lh --si` count."""

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
