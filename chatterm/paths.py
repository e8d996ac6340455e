"""Where chatterm keeps things: the XDG base directories, under a `chatterm` folder."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    base = Path(value) if value and os.path.isabs(value) else Path.home() / fallback
    return base / "chatterm"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache")


def user_models_toml() -> Path:
    return config_dir() / "models.toml"


def downloaded_models_dir() -> Path:
    return data_dir() / "models"


def state_dir() -> Path:
    """Logs and other state worth keeping but not worth backing up."""
    return _xdg("XDG_STATE_HOME", ".local/state")
