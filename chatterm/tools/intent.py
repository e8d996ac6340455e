"""What a turn with tools on needs beyond parsing, for small models that describe a
run instead of making one (docs/tool-calls.md, "Small models in the loop"):

- `asks_to_run`: the question asks to run, test or check something, so the turn's
  first reply is held to a call (the call grammar from its first token);
- `written_as_text`: a reply that wrote a call as text (`tools.python(code=...)`, a
  JSON object naming a tool with other keys), so the model is told once what a call
  looks like and answers again;
- `Repeats`: a call identical to one already made this turn is not run again; the
  model is told its result is above."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from chatterm.tools.calls import ToolCall

# Asking to run something: a verb of running with its object ("run it", "test your
# function", "execute the script"), or the Chinese verbs (no spaces to find words by).
_RUN = re.compile(
    r"\b(run|execute|test|try|check|verify|debug)\s+(it|this|that|them|these|those|the|your|my|our|on|all)\b"
    r"|运行|执行|测试|跑一下|试一下|试试|调试|验证", re.I)


def asks_to_run(question: str) -> bool:
    """Whether the user asks for something to be run or tested."""
    return bool(_RUN.search(question))


def written_as_text(text: str, tools: Iterable[str]) -> str | None:
    """The tool a reply seems to call in its text without making a call (None: it
    does not): `python(code=...)`, `tools.run(...)`, or `"name": "python"` in JSON."""
    names = "|".join(re.escape(n) for n in sorted(tools, key=len, reverse=True))
    if not names:
        return None
    match = re.search(rf'\b(?:tools?\.)?({names})\s*\(\s*\w+\s*=|"name"\s*:\s*"({names})"', text)
    return (match.group(1) or match.group(2)) if match else None


def call_shape(name: str, example: dict[str, Any]) -> str:
    """What the model is told when it wrote a call as text: the shape of a real one."""
    call = json.dumps({"name": name, "arguments": example}, ensure_ascii=False)
    return (f"That was text, not a tool call, so nothing ran. To run it, reply with only the call:\n"
            f"<tool_call>\n{call}\n</tool_call>\nand its result comes back to you.")


class Repeats:
    """The calls made this turn, to know a call made twice."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}  # call -> what it gave the model

    def earlier(self, call: ToolCall) -> str | None:
        """What `call` gave the model when it was made earlier this turn (None: it
        was not, or it does not parse)."""
        return self._seen.get(self._key(call)) if call.arguments is not None else None

    def remember(self, call: ToolCall, result: str) -> None:
        if call.arguments is not None:
            self._seen[self._key(call)] = result

    @staticmethod
    def _key(call: ToolCall) -> str:
        return json.dumps([call.name, call.arguments], sort_keys=True, ensure_ascii=False)
