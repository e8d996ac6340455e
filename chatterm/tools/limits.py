"""What one tool call may use: processes, memory, CPU time and the size of a file it
writes. Defaults here; `~/.config/chatterm/tools.toml` may set them:

    [limits]
    processes = 256      # tasks (processes and threads) the call may have at once
    memory_mb = 16384    # address space of each process (default: the machine's RAM)
    cpu_s = 300          # CPU seconds of each process
    file_mb = 1024       # the largest file it may write

The reaper (`reaper.py`) applies them to the program it runs: resource limits
(setrlimit), a pids cgroup where chatterm may make one, and a PID namespace where the
kernel allows one (docs/guide/tools.md, "What a call may use"). Read when a call runs:
a chat that runs none reads nothing."""

from __future__ import annotations

import os
from pathlib import Path

from chatterm import paths
from chatterm.errors import ConfigError
from chatterm.models.catalog import load_toml
from chatterm.settings import shown_number

# key: (default, lowest, highest, what one unit is)
_LIMITS: dict[str, tuple[int, int, int, str]] = {
    "processes": (256, 8, 1 << 20, "tasks"),
    "memory_mb": (0, 64, 1 << 30, "MiB"),  # 0: the machine's RAM
    "cpu_s": (300, 1, 1 << 31, "CPU seconds"),
    "file_mb": (1024, 1, 1 << 30, "MiB"),
}


def tools_toml() -> Path:
    return paths.config_dir() / "tools.toml"


def limits(path: Path | None = None) -> dict[str, int]:
    """The limits in the reaper's units: processes, memory (bytes), cpu (s), file (bytes)."""
    path = path or tools_toml()
    values = {key: default for key, (default, _, _, _) in _LIMITS.items()}
    if path.exists():
        data = load_toml(path)
        unknown = set(data) - {"limits"}
        table = data.get("limits", {})
        if unknown or not isinstance(table, dict):
            raise ConfigError(f"{path}: holds one table, [limits] (keys: {', '.join(_LIMITS)})")
        for key, value in table.items():
            if key not in _LIMITS:
                raise ConfigError(f"{path}: [limits]: unknown key {key!r} (keys: {', '.join(_LIMITS)})")
            _, low, high, unit = _LIMITS[key]
            if type(value) is not int or not low <= value <= high:
                shown = shown_number(value) if isinstance(value, (int, float)) else repr(value)
                raise ConfigError(f"{path}: [limits]: {key} must be an integer of {unit} from {low:,} to {high:,}, "
                                  f"not {shown}")
            values[key] = value
    memory = values["memory_mb"] << 20 or _ram_bytes()
    return {"processes": values["processes"], "memory": memory, "cpu": values["cpu_s"],
            "file": values["file_mb"] << 20}


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 16 << 30


def argv(values: dict[str, int]) -> list[str]:
    """The reaper's options for `values`."""
    return [f"--limit={key}={value}" for key, value in values.items()]
