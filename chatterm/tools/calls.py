"""A tool call as the model asked for it, and what came of it: the two events a reply
gains when tools are on (`conversation.turn`), and the shapes sessions keep them in."""

from __future__ import annotations

import re
from typing import Any

from chatterm import json_input
from chatterm.records import NO, YES, ToolCall, ToolResult

__all__ = ["NO", "YES", "ToolCall", "ToolResult", "call_of", "from_message", "guess_name"]

from_message = ToolCall.stored  # a session's stored call as a ToolCall


def call_of(item: Any, raw: str) -> ToolCall:
    """A call from its JSON object ({name, arguments or parameters})."""
    if not isinstance(item, dict):
        return ToolCall("?", None, raw=raw, error="a call must be a JSON object")
    if isinstance(item.get("function"), dict):  # {"type": "function", "function": {...}}
        item = item["function"]
    name = item.get("name")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):  # arguments as a JSON string (OpenAI's shape)
        try:
            arguments = json_input.loads(arguments) if arguments.strip() else {}
        except ValueError as e:
            return ToolCall(str(name or "?"), None, raw=raw, error=f"its arguments are not valid JSON ({e})")
    if not isinstance(name, str) or not name:
        return ToolCall("?", None, raw=raw, error='a call needs a "name"')
    if not isinstance(arguments, dict):
        return ToolCall(name, None, raw=raw, error="its arguments must be a JSON object")
    return ToolCall(name, arguments, raw=raw)


def guess_name(text: str) -> str:
    """The name a call that does not parse seems to give ("?": none)."""
    match = re.search(r'"name"\s*:\s*"([^"]{1,64})"', text)
    return match.group(1) if match else "?"
