"""MCP servers as the user configures them: `~/.config/chatterm/mcp.json` (or
`--mcp FILE`) in the `mcpServers` format Claude Desktop, Cursor and gptme read:

    {"mcpServers": {
      "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
      "docs": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}}}

A stdio server is a `command` with `args` and `env`; a streamable-HTTP one a `url` with
`headers`. `${NAME}` in any of those is the environment variable NAME when the server
starts, so a secret is named in the file, never written there. `"disabled": true`
skips a server; `"timeout"` is the seconds a call may take (60)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatterm import paths, safe_files
from chatterm.errors import ConfigError

MAX_CONFIG = 1 << 20
CALL_TIMEOUT_S = 60.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_path() -> Path:
    return paths.config_dir() / "mcp.json"


@dataclass
class ServerConfig:
    name: str
    command: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = CALL_TIMEOUT_S

    @property
    def kind(self) -> str:
        return "http" if self.url else "stdio"

    def expanded(self) -> ServerConfig:
        """This server with `${NAME}` replaced by the environment's NAME (ConfigError
        naming the variable when it is not set)."""
        def expand(text: str) -> str:
            def value(match: re.Match) -> str:
                name = match.group(1)
                if name not in os.environ:
                    raise ConfigError(f"MCP server {self.name!r} needs ${name}, which is not set")
                return os.environ[name]
            return _VARIABLE.sub(value, text)
        return ServerConfig(self.name, expand(self.command), [expand(a) for a in self.args],
                            {k: expand(v) for k, v in self.env.items()}, expand(self.url),
                            {k: expand(v) for k, v in self.headers.items()}, self.timeout_s)


def load(path: Path | None = None) -> list[ServerConfig]:
    """The servers of `path` (default: the user's mcp.json; none when it does not exist)."""
    explicit = path is not None
    path = path or default_path()
    if not explicit and not path.exists():
        return []
    try:
        data = json.loads(safe_files.read_bytes(path, MAX_CONFIG, what="MCP configuration").decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no MCP configuration at {path}") from None
    except (safe_files.RefusedFile, OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not a readable MCP configuration ({' '.join(str(e).split())[:160]})") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(f'{path}: no "mcpServers" object')
    return [server for name, raw in servers.items() if (server := _server(path, name, raw)) is not None]


def _server(path: Path, name: str, raw: Any) -> ServerConfig | None:
    where = f"{path}: server {name!r}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not an object")
    if raw.get("disabled") is True:
        return None
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
        raise ConfigError(f"{where}: names use letters, digits, '.', '_' and '-' (40 at most)")
    command, url = raw.get("command"), raw.get("url")
    if bool(command) == bool(url):
        raise ConfigError(f'{where} needs a "command" (stdio) or a "url" (streamable HTTP), one of them')
    args, env, headers = raw.get("args", []), raw.get("env", {}), raw.get("headers", {})
    if command is not None and not isinstance(command, str):
        raise ConfigError(f'{where}: "command" must be a string')
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise ConfigError(f'{where}: "url" must be an http:// or https:// address')
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise ConfigError(f'{where}: "args" must be a list of strings')
    for key, table in (("env", env), ("headers", headers)):
        if not (isinstance(table, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in table.items())):
            raise ConfigError(f'{where}: "{key}" must map names to strings')
    timeout = raw.get("timeout", CALL_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
        raise ConfigError(f'{where}: "timeout" must be seconds between 0 and 3600')
    return ServerConfig(name, command or "", list(args), dict(env), url or "", dict(headers), float(timeout))
