"""The JSON Schema a reply must match, from the command line or /schema: JSON text, or
the path of a file holding it. `--json` asks for any JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatterm import safe_files
from chatterm.engines.call_grammar import schema_gbnf
from chatterm.errors import ConfigError

ANY_OBJECT: dict[str, Any] = {"type": "object"}
MAX_SCHEMA = 1 << 20


def parse(text: str) -> dict[str, Any]:
    """The schema in `text` (JSON), or in the file `text` names; checked to make a
    grammar (ConfigError, one line, before any model loads)."""
    source = "--schema"
    stripped = text.strip()
    if not stripped.startswith("{"):
        path = Path(stripped).expanduser()
        try:
            stripped = safe_files.read_bytes(path, MAX_SCHEMA, what="schema file").decode("utf-8")
        except FileNotFoundError:
            looks_like_text = not stripped.endswith(".json") and ("/" not in stripped or " " in stripped)
            if looks_like_text:  # `--schema 'not json'`: neither a schema nor a file's name
                raise ConfigError(f"--schema: {stripped[:60]!r} is neither a JSON Schema (an object, {{...}}) "
                                  "nor a file holding one") from None
            raise ConfigError(f"--schema: no such file {path} (give a JSON Schema or a file holding one)") from None
        except (OSError, UnicodeDecodeError, safe_files.RefusedFile) as e:
            raise ConfigError(f"--schema: cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        source = str(path)
    try:
        schema = json.loads(stripped)
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{source}: not JSON ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(schema, dict):
        raise ConfigError(f"{source}: a JSON Schema is an object")
    check(schema, source)
    return schema


def check(schema: dict[str, Any], source: str = "the schema") -> None:
    """ConfigError when `schema` cannot become a grammar."""
    try:
        schema_gbnf(schema)
    except Exception as e:  # the converter raises whatever it meets
        raise ConfigError(f"{source} cannot be turned into a grammar: {' '.join(str(e).split())[:160]}") from None


def instruction(schema: dict[str, Any]) -> str:
    """What the model is told (beside the grammar that holds it to it)."""
    return ("Answer with a single JSON value that matches this JSON Schema, and nothing else:\n"
            + json.dumps(schema, ensure_ascii=False))
