"""Tool calls that small models write as plain JSON instead of their template's
markup: a fenced block

    ```json
    {"name": "python", "arguments": {"code": "print(1)"}}
    ```

or the same object alone at the start of a line (docs/tool-calls.md: Qwen2.5-Coder
does this although its template teaches `<tool_call>` tags; llama.cpp's parser for the
Hermes family accepts it too). Such a block is a call only when its `name` is a tool
offered and its only other key is `arguments` or `parameters`; anything else (an
example in an explanation, a tool not offered, extra keys) stays text.

A `Candidate` decides from as little text as it can: a fenced block in another language, or
an object whose first key is not "name" or whose name is no offered tool, is text after
a few characters; only a likely call is held back until its object closes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatterm import json_input
from chatterm.tools.calls import ToolCall, call_of, guess_name

FENCE = "```"
FENCE_LANGUAGES = ("", "json", "xml", "tool_call", "tool_code")  # what a call's fence may be marked
NAME_LIMIT = 64  # OpenAI's limit for a tool name: a longer one is no call
WHITE = " \t\r\n"


@dataclass
class Verdict:
    """`text`: not a call, decided after `end` characters (which are text); `call`:
    the call, made of the first `end` characters; neither: undecided yet."""

    end: int = 0
    text: bool = False
    call: ToolCall | None = None


UNDECIDED = Verdict()


def opens_call(text: str, at: int) -> bool:
    """Whether a candidate may begin at `text[at]` (a line start): a fence or a brace."""
    return text.startswith("{", at) or FENCE.startswith(text[at:at + 3])


HEAD_LIMIT = 256  # characters by which a call's head (fence, `{"name": "TOOL"`) has shown


class Candidate:
    """Text from a line start that opens with "```" or "{", as it streams in. Its
    object's end is found by one pass over the pieces as they come (`Braces` keeps its
    place), and the text is joined only when it is decided, so a long call costs the
    same per piece as a short one."""

    def __init__(self, text: str = ""):
        self._text = text
        self._pieces: list[str] = []  # added since the text was last joined
        self._braces: Braces | None = None
        self._end = -1  # the index after the object, once it closed

    @property
    def text(self) -> str:
        if self._pieces:
            self._text += "".join(self._pieces)
            self._pieces = []
        return self._text

    def add(self, text: str) -> None:
        self._pieces.append(text)
        if self._braces is not None and self._end < 0:
            self._end = self._braces.feed(text)

    def verdict(self, tools: frozenset[str], final: bool = False) -> Verdict:
        """`final`: the reply ended here (a call missing only its closing fence is whole)."""
        if self._braces is not None and self._end < 0 and not final:
            return UNDECIDED  # inside a likely call's object: nothing to look at yet
        text = self.text
        fenced = text.startswith("`")
        i = 0
        if fenced:
            if not text.startswith(FENCE):
                return Verdict(len(text), text=True) if final or len(text) >= 3 else UNDECIDED
            newline = text.find("\n")
            if newline < 0:
                short = len(text) <= len(FENCE) + max(map(len, FENCE_LANGUAGES))
                return UNDECIDED if short and not final else Verdict(len(text), text=True)
            if text[3:newline].strip().lower() not in FENCE_LANGUAGES:
                return Verdict(newline + 1, text=True)
            i = _skip_white(text, newline + 1)
            if i == len(text):
                return Verdict(len(text), text=True) if final or i > HEAD_LIMIT else UNDECIDED
            if text[i] != "{":
                return Verdict(i, text=True)
        name, after = _name_head(text, i)
        if name is None:
            if after < 0:
                return Verdict(len(text), text=True) if final or len(text) > HEAD_LIMIT else UNDECIDED
            return Verdict(max(after, 1), text=True)
        if name not in tools:
            return Verdict(after, text=True)
        if self._braces is None:
            self._braces = Braces(i)
            self._end = self._braces.end(text)
        end = self._end
        if end < 0:
            return Verdict(len(text), text=True) if final else UNDECIDED
        stop = end
        if fenced:
            j = _skip_white(text, end)
            rest = text[j:]
            if rest.startswith(FENCE):
                stop = j + len(FENCE)
            elif not final and FENCE.startswith(rest):
                return UNDECIDED  # the closing fence may be on its way
            elif not FENCE.startswith(rest):
                return Verdict(j, text=True)  # more inside the fence than the object: an example
        call = _call(text[i:end], tools)
        return Verdict(stop, call=call) if call is not None else Verdict(stop, text=True)


def _skip_white(text: str, i: int) -> int:
    while i < len(text) and text[i] in WHITE:
        i += 1
    return i


def _name_head(text: str, i: int) -> tuple[str | None, int]:
    """`{ "name" : "NAME"` from `text[i]`: (NAME, the index after its closing quote);
    (None, k) when it is not one (k: where that showed), (None, -1) when the text
    ends before telling."""
    for literal in ("{", '"name"', ":", '"'):
        i = _skip_white(text, i)
        for ch in literal:
            if i == len(text):
                return None, -1
            if text[i] != ch:
                return None, i
            i += 1
    start = i
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return text[start:i], i + 1
        if ch in '\\\n' or i - start >= NAME_LIMIT:
            return None, i
        i += 1
    return None, -1


class Braces:
    """Where the JSON object that opens at `start` ends, found by one pass over the
    text as it comes (`end` over the whole text, or `feed` piece by piece)."""

    def __init__(self, start: int):
        self.at, self.depth, self.quoted, self.escaped = start, 0, False, False
        self.closed = -1

    def end(self, text: str) -> int:
        """The index in `text` after the object (-1: not closed yet)."""
        return self.closed if self.closed >= 0 else self.feed(text[self.at:])

    def feed(self, piece: str) -> int:
        """`piece`, the text that follows what was seen: the index after the object
        (counted from the text's start), or -1 while it is open."""
        if self.closed >= 0:
            return self.closed
        depth, quoted, escaped = self.depth, self.quoted, self.escaped
        for k, ch in enumerate(piece):
            if quoted:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    self.closed = self.at + k + 1
                    return self.closed
        self.at += len(piece)
        self.depth, self.quoted, self.escaped = depth, quoted, escaped
        return -1


def _call(raw: str, tools: frozenset[str]) -> ToolCall | None:
    """The call `raw` (one JSON object) makes, or None when it is no call. JSON that
    does not parse, with an offered tool's name, is a call gone wrong: the model hears
    why and writes it again."""
    try:
        value: Any = json_input.loads(raw)
    except ValueError as e:
        return ToolCall(guess_name(raw), None, raw=raw, error=f"the call is not valid JSON ({e})")
    if not isinstance(value, dict) or value.get("name") not in tools:
        return None
    others = set(value) - {"name"}
    if others != {"arguments"} and others != {"parameters"}:
        return None
    return call_of(value, raw)
