"""Figures from repeated runs: median and range, never a single sample (this kind of
machine swings 15-20% between runs)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Figure:
    section: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def as_dict(self) -> dict:
        return {"section": self.section, "name": self.name, "unit": self.unit,
                "median": self.median, "min": self.low, "max": self.high,
                "runs": len(self.values), "values": self.values, "note": self.note}


@dataclass
class Target:
    name: str
    value: float
    limit: float
    at_least: bool  # True: value >= limit; False: value <= limit
    note: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "limit": self.limit,
                "rule": ">=" if self.at_least else "<=", "met": self.met, "note": self.note}


def ratio(values_a: list[float], values_b: list[float], scale: float = 1.0) -> list[float]:
    """Each run's a / b (times `scale`): a ratio's spread, not a ratio of medians."""
    return [a / b * scale for a, b in zip(values_a, values_b)]
