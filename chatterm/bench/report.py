"""The benchmark's output: a header (machine, versions, settings), one table row per
figure (median, min-max, runs), the targets met or missed; the same as JSON."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any, TextIO

from chatterm.bench.stats import Figure, Target

PACKAGES = ("chatterm", "llama-cpp-python", "ctransformers", "rich", "prompt_toolkit", "click")


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu, "cores": len(os.sched_getaffinity(0)), "system": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def _number(x: float) -> str:
    if x != x:  # NaN
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}" if abs(x) < 1 else f"{x:.2f}"


def print_table(out: TextIO, header: dict[str, Any], figures: list[Figure], targets: list[Target]) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in header["machine"]["versions"].items() if v)
    m = header["machine"]
    out.write(f"chatterm benchmark  {m['date']}\n{m['cpu']}, {m['cores']} cores, {m['system']}\n"
              f"Python {m['python']}; {versions}\n")
    out.write("".join(f"{k}: {v}\n" for k, v in header["settings"].items()))
    section = None
    for f in figures:
        if f.section != section:
            section = f.section
            out.write(f"\n{section}\n")
        spread = f"{_number(f.low)}-{_number(f.high)}" if len(f.values) > 1 else ""
        note = f"  {f.note}" if f.note else ""
        out.write(f"  {f.name:<44} {_number(f.median):>10} {f.unit:<7} {spread:>17}  n={len(f.values)}{note}\n")
    if targets:
        out.write("\nTargets\n")
        for t in targets:
            rule = ">=" if t.at_least else "<="
            verdict = "met" if t.met else "MISSED"
            note = f"  ({t.note})" if t.note else ""
            out.write(f"  {t.name:<52} {_number(t.value):>8} {rule} {_number(t.limit):<7} {verdict}{note}\n")
    out.flush()


def write_json(path: Path, header: dict[str, Any], figures: list[Figure], targets: list[Target]) -> None:
    data = {**header, "figures": [f.as_dict() for f in figures], "targets": [t.as_dict() for t in targets]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
