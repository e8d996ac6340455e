"""A tool call as the model asked for it, and what came of it: the two events a reply
gains when tools are on (`conversation.turn`), and the shapes sessions keep them in."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

YES, NO = "yes", "no"


@dataclass
class ToolCall:
    """`arguments` is None when the model's call did not parse (`error` says why);
    `raw` is what the model wrote for it, shown when asked."""

    name: str
    arguments: dict[str, Any] | None
    raw: str = ""
    error: str = ""
    # Nine letters and digits: Mistral's templates refuse any other id (OpenAI takes any).
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:9])
    decision: str | None = None  # YES or NO: the user's (or a pre-approval's) answer
    said_by: str = ""  # who decided when the user was not asked: "--yes run", "always (this session)"

    def approve(self, arguments: dict[str, Any] | None = None, said_by: str = "") -> None:
        """Run it (with `arguments` in place of the model's: the user edited them)."""
        if arguments is not None:
            self.arguments = arguments
        self.decision, self.said_by = YES, said_by

    def decline(self, said_by: str = "") -> None:
        self.decision, self.said_by = NO, said_by

    def as_message(self) -> dict[str, Any]:
        """The call in a session's assistant message (and chat templates' `tool_calls`)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments if self.arguments is not None
                             else {"_unparsed": self.raw}}}

    def arguments_text(self) -> str:
        if self.arguments is None:
            return self.raw
        return json.dumps(self.arguments, ensure_ascii=False, indent=1)


@dataclass
class ToolResult:
    """What running (or not running) a call gave back to the model."""

    call: ToolCall
    text: str  # what the model reads
    summary: str  # one line for the transcript: "exit 1 · 23 lines"
    ok: bool = True

    def as_message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call.id, "name": self.call.name,
                "content": self.text, "summary": self.summary}


def from_message(call: dict[str, Any]) -> ToolCall:
    """A session's stored call as a `ToolCall` (decided: it is history)."""
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = {"_unparsed": arguments}
    return ToolCall(str(function.get("name", "")), arguments if isinstance(arguments, dict) else {},
                    id=str(call.get("id", "")), decision=YES)


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
            arguments = json.loads(arguments) if arguments.strip() else {}
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
