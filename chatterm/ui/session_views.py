"""Saved sessions as text lines, the same for `chatterm sessions` and `/sessions`.
Everything shown was typed by someone or written by a model: it goes through `clean`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.cells import cell_len, set_cell_size

from chatterm.sessions import archive
from chatterm.sessions.archive import Hit, Summary
from chatterm.ui.sanitize import clean, one_line
from chatterm.units import count

FIRST_CELLS = 40  # terminal cells of the first question shown


def fit(text: str, cells: int) -> str:
    """`text` on one line, cut to `cells` terminal cells (a CJK character takes two)."""
    text = clean(" ".join(text.split()))
    if cell_len(text) <= cells:
        return text
    return set_cell_size(text, cells - 1).rstrip() + "…"


def ratings(summary: Summary) -> str:
    return " ".join(part for part in (f"✓{summary.good}" if summary.good else "",
                                      f"✗{summary.bad}" if summary.bad else "") if part) or "-"


def summary_lines(summaries: Iterable[Summary]) -> list[str]:
    lines = [f"{'NAME':<24} {'UPDATED':<16} {'MODEL':<22} {'TURNS':>5}  {'RATED':<8} FIRST QUESTION"]
    for s in summaries:
        lines.append(f"{one_line(s.name):<24} {s.updated:%Y-%m-%d %H:%M} {fit(s.model, 22):<22} {s.turns:>5}  "
                     f"{ratings(s):<8} {fit(s.first, FIRST_CELLS)}")
    return lines


def hit_lines(hits: Iterable[Hit]) -> list[str]:
    return [f"{one_line(h.name):<24} {h.updated:%Y-%m-%d %H:%M}  {h.where}: {clean(h.snippet)}" for h in hits]


def report(paths: list[Path], search: str | None) -> tuple[list[str], list[str], str]:
    """What `chatterm sessions [--search TEXT]` and `/sessions [TEXT]` show: (the lines,
    one line per file that could not be read, a count)."""
    if search is not None:
        hits, unreadable = archive.partition(archive.search(search, paths))
        matching = f"{count(len(hits), 'message')} match{'es' if len(hits) == 1 else ''} {search!r}"
        count_line = f"{matching} in {len({h.name for h in hits}):,} of {count(len(paths), 'session')}"
        return hit_lines(hits), [one_line(u.line) for u in unreadable], count_line
    found, unreadable = archive.partition(archive.read_all(paths))
    lines = summary_lines(archive.summary(s) for s in found) if found else []
    return lines, [one_line(u.line) for u in unreadable], count(len(found), "session")
