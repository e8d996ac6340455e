"""Roles: named system prompts, and the tools a role offers (`tools = [...]`). A few
ship in `roles.toml` beside this module; the user's `~/.config/chatterm/roles.toml`
adds its own or replaces them by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatterm import paths
from chatterm.errors import ConfigError
from chatterm.models.catalog import load_toml


@dataclass
class Role:
    name: str
    prompt: str
    description: str = ""
    source: str = "chatterm"  # or the user's file
    tools: tuple[str, ...] = ()  # the tools the role offers the model (each call still asked)


def user_roles_toml() -> Path:
    return paths.config_dir() / "roles.toml"


def load() -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for path, source in ((Path(__file__).with_name("roles.toml"), "chatterm"), (user_roles_toml(), "yours")):
        if not path.exists():
            continue
        for name, raw in load_toml(path).items():
            if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str) or not raw["prompt"].strip():
                raise ConfigError(f"{path}: role {name!r} needs a prompt = \"...\" (a system prompt)")
            description = raw.get("description", "")
            if not isinstance(description, str):
                raise ConfigError(f"{path}: role {name!r}: description must be text")
            tools = raw.get("tools", [])
            if not (isinstance(tools, list) and all(isinstance(t, str) for t in tools)):
                raise ConfigError(f"{path}: role {name!r}: tools must be a list of tool names")
            if tools:
                from chatterm.tools.toolbox import select

                select(tools)  # an unknown name is one line now, not when the role is used
            roles[name] = Role(name, raw["prompt"].strip(), description, source, tuple(tools))
    return roles


def find(name: str) -> Role:
    roles = load()
    if name not in roles:
        raise ConfigError(f"no role {name!r}: {', '.join(sorted(roles))} (yours go in {user_roles_toml()})")
    return roles[name]
