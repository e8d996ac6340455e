"""What a turn with tools on needs beyond parsing, for small models that describe a
run instead of making one (docs/tool-calls.md, "Small models in the loop"). A question
that asks to run or test its answer's code is chatterm's to check
(`conversation.verify`), never a call the model is pushed into.

- `written_as_text`: a reply that wrote a call as text (`tools.python(code=...)`, a
  JSON object naming a tool with other keys), so the model is told once what a call
  looks like and answers again, held to a call;
- `Repeats`: a call identical to the last one run this turn, with nothing run since,
  is not run again; the model gets the earlier result, and after two repeats the
  turn's calls stop."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from chatterm.tools.calls import ToolCall
from chatterm.tools.json_calls import FENCE, WHITE, Braces

FAKE_RESULT = "<tool_response>"  # how results reach Hermes-style models: never the model's to write


def written_as_text(text: str, tools: Iterable[str]) -> str | None:
    """The tool a reply seems to call in its text without making a call (None: it
    does not): `python(code=...)`, `tools.run(...)`, or a JSON object naming a tool
    that ends the reply (where a call stands; one shown mid-reply is an example)."""
    names = "|".join(re.escape(n) for n in sorted(tools, key=len, reverse=True))
    if not names:
        return None
    match = re.search(rf"\b(?:tools?\.)?({names})\s*\(\s*\w+\s*=", text)
    if match:
        return match.group(1)
    for match in re.finditer(rf'^[ \t]*(?:```\w*[ \t]*\n[ \t]*)?(\{{)\s*"name"\s*:\s*"({names})"', text, re.M):
        end = Braces(match.start(1)).end(text)
        if end > 0 and text[end:].strip(WHITE) in ("", FENCE):
            return match.group(2)
    return None


_CODE_BLOCK = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)  # closed: a cut block is none


def code_blocks(text: str) -> list[str]:
    """The closed fenced code blocks of a reply (Python or unmarked), without fences."""
    return _CODE_BLOCK.findall(text)


def last_code_block(text: str) -> str | None:
    blocks = code_blocks(text)
    return blocks[-1].rstrip("\n") if blocks else None


WRITTEN = "That was text, not a tool call, so nothing ran"
FAKED = "Only a tool call gives results: you cannot write them yourself, and nothing ran"


_EXAMPLE = re.compile(r"^[ \t]*>>> (.+)$", re.M)


def example_prints(code: str, most: int = 5) -> list[str]:
    """`print(...)` lines for the examples a program's docstrings show (`>>> f(2)`),
    so a run shows what the examples give; statements are left out."""
    out = []
    for example in _EXAMPLE.findall(code):
        example = example.strip()
        if (re.match(r"(import|from|def|class|for|while|if|with|print)\b", example)
                or re.search(r"[^=!<>]=[^=]", example)):
            continue
        out.append(f"print({example})")
    return out[:most]


def call_shape(name: str, example: dict[str, Any], said: str) -> str:
    """What the model is told when it wrote a call as text, wrote a result itself, or
    made no call when asked to run something (`said`): the shape of a real call."""
    call = json.dumps({"name": name, "arguments": example}, ensure_ascii=False)
    return (f"{said}. Reply with only the call, with your code and the lines that print its results:\n"
            f"<tool_call>\n{call}\n</tool_call>\nand its output comes back to you")


class Repeats:
    """The calls made this turn since the last that ran, to know a call made twice.
    A call that runs may change what any other call would give (a file written,
    then read again), so only what came after the last run counts."""

    STOP_AFTER = 2  # repeats in a turn after which the calls stop: the model is stuck

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}  # call -> what it gave the model
        self.count = 0  # calls repeated this turn

    def earlier(self, call: ToolCall) -> str | None:
        """What `call` gave the model when it was made earlier this turn, with no call
        run since (None: it was not)."""
        earlier = self._seen.get(self._key(call))
        self.count += earlier is not None
        return earlier

    @property
    def stuck(self) -> bool:
        return self.count >= self.STOP_AFTER

    def remember(self, call: ToolCall, result: str, ran: bool = False) -> None:
        """`ran`: the call ran (what it gave before is stale for every call)."""
        if ran:
            self._seen.clear()
        self._seen[self._key(call)] = result

    @staticmethod
    def _key(call: ToolCall) -> str:
        """What makes two calls the same: their arguments, or, for calls that do not
        parse, what the model wrote (the same malformed call again is stuck too)."""
        if call.arguments is None:
            return json.dumps([call.name, None, call.raw, call.error], ensure_ascii=False)
        return json.dumps([call.name, call.arguments], sort_keys=True, ensure_ascii=False)
