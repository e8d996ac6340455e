"""Tool calls out of a reply's text as it streams, in whichever syntax the model's
family writes them:

- Qwen2.5, Qwen3, Hermes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`;
- Qwen3-Coder: `<tool_call><function=NAME><parameter=KEY>VALUE</parameter></function></tool_call>`;
- Llama 3.1-3.3: `<|python_tag|>{"name": ..., "parameters": {...}}`, or the same JSON
  alone as the whole reply;
- Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}]` or `[TOOL_CALLS]NAME[ARGS]{...}`.

Text around calls streams on; a call is an event once whole, never shown as markup.
A piece with none of the markers' first characters (nearly every token) costs one
check and no copy; only text that might start a marker is held back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from chatterm import json_input
from chatterm.tools.calls import ToolCall, call_of, guess_name
from chatterm.tools.json_calls import FENCE, WHITE, Candidate, opens_call


@dataclass(frozen=True)
class Family:
    name: str
    opens: dict[str, str | None]  # marker -> what closes it (None: the end of the reply)
    bare_json: bool = False  # a reply that is one JSON object is a call (Llama 3)


HERMES = Family("hermes", {"<tool_call>": "</tool_call>"})
LLAMA3 = Family("llama3", {"<|python_tag|>": None}, bare_json=True)
MISTRAL = Family("mistral", {"[TOOL_CALLS]": None})
ANY = Family("any", {**HERMES.opens, **LLAMA3.opens, **MISTRAL.opens})  # a server that parses nothing


def family_of(template: str) -> Family | None:
    """The tool syntax a chat template teaches its model (None: it has none)."""
    if "<tool_call>" in template:
        return HERMES
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<|python_tag|>" in template or ("ipython" in template and "tools" in template):
        return LLAMA3
    return None


class CallParser:
    """Feed it the answer's text pieces; it returns what to show and the calls.

    `tools`: the names of the tools offered. With them, a call written as JSON (a
    fenced block or an object at a line start, `json_calls`) is a call too, in any
    family: small models write their calls so more often than in their markup. Such
    a call is one only where a call can stand, at the reply's end: it is held until
    the reply ends, and becomes the text it was if anything but white space follows
    (a reply that shows the call format in an explanation runs nothing)."""

    def __init__(self, family: Family, tools: Iterable[str] = (), quoted: str = ""):
        """`quoted`: the user's question; a call written exactly as it stands there is
        the model quoting it, and stays text."""
        self.family = family
        self.tools = frozenset(tools)
        self._quoted = " ".join(quoted.split())
        self._marker = ""  # the marker that opened the call being read
        self._leads = "".join(sorted({m[0] for m in family.opens} | (set("`{") if self.tools else set())))
        self._held = ""  # the end of the text so far, which may begin a marker
        self._close: str | None = None  # inside a call: what ends it
        self._inside = False
        self._body: list[str] = []
        self._body_end = ""  # the body's last characters, where a closing marker may have begun
        self._bare = family.bare_json  # still at the start, where a bare JSON call may begin
        self._candidate: Candidate | None = None  # text that may be a call written as JSON
        self._line_start = True  # the text shown so far ends a line (or is none)
        self._in_fence = False  # the text shown so far has a code fence open
        self._pending: list[tuple[str, ToolCall | None]] = []  # JSON calls held (their text), and white space after

    def feed(self, text: str) -> list[str | ToolCall]:
        if not self._inside and not self._held and not self._bare and self._candidate is None and not self._pending:
            for lead in self._leads:
                if lead in text:
                    break
            else:
                if text:
                    self._line_start = text[-1] == "\n"
                return [text]
        return self._scan(text)

    def finish(self) -> list[str | ToolCall]:
        """The reply ended: a call still open is parsed as it stands."""
        out: list[str | ToolCall] = []
        while self._candidate is not None:
            out += self._judge(final=True)
        if self._inside:
            body = "".join(self._body)
            self._calls_or_quote(parse_body(body, self._close), self._marker + body, out)
            self._inside, self._body = False, []
        elif self._held:
            self._show(self._held, out)
        self._held = ""
        for text, call in self._pending:  # nothing but white space came after them: calls
            out.append(call if call is not None else text)
        self._pending = []
        return out

    def _scan(self, text: str) -> list[str | ToolCall]:
        out: list[str | ToolCall] = []
        if self._inside:
            self._body.append(text)
            return self._close_if_ended(out)
        if self._candidate is not None:
            self._candidate.add(text)
            return self._judge()
        text = self._held + text
        self._held = ""
        if self._bare:
            stripped = text.lstrip()
            if not stripped:
                self._held = text
                return out
            if stripped[0] == "{" and _could_be_call(stripped):
                if len(stripped) < 12:
                    self._held = text  # not enough to tell yet
                    return out
                self._bare = False
                self._inside, self._close, self._body = True, None, [stripped]
                self._marker = text[:len(text) - len(stripped)]
                return out
            self._bare = False
        at, marker = _first_marker(text, self.family.opens)
        opening, keep = self._opening(text, at) if self.tools else (None, 0)
        if opening is not None:
            self._show(text[:opening], out)
            self._candidate = Candidate(text[opening:])
            return out + self._judge()
        if marker is None:
            keep = max(keep, _partial_marker(text, self.family.opens))
            self._show(text[:len(text) - keep], out)
            self._held = text[len(text) - keep:]
            return out
        self._show(text[:at], out)
        self._inside, self._close, self._marker = True, self.family.opens[marker], marker
        self._body, self._body_end = [text[at + len(marker):]], ""
        return self._close_if_ended(out)  # what follows a closed call is scanned there

    def _opening(self, text: str, limit: int) -> tuple[int | None, int]:
        """(Where, before `limit`, a call written as JSON may open: a line start
        outside a code fence with "```" or "{"; how many characters at the end to hold
        back: a fence that may be closing one, cut between two pieces.)"""
        fenced = self._in_fence
        for at in _line_starts(text, self._line_start):
            if at >= limit or at >= len(text):
                return None, 0
            if text.startswith(FENCE, at):
                if not fenced:
                    return at, 0
                fenced = False
            elif fenced and FENCE.startswith(text[at:]):
                return None, len(text) - at
            elif not fenced and opens_call(text, at):
                return at, 0
        return None, 0

    def _judge(self, final: bool = False) -> list[str | ToolCall]:
        """The candidate's verdict: undecided (held on), a call, or text; what follows
        the part decided is scanned again."""
        candidate = self._candidate
        assert candidate is not None
        verdict = candidate.verdict(self.tools, final)
        if verdict.call is None and not verdict.text:
            return []
        self._candidate = None
        out: list[str | ToolCall] = []
        if verdict.call is not None and not self._is_quote([verdict.call]):
            self._pending.append((candidate.text[:verdict.end], verdict.call))
            self._line_start = True
        else:
            self._show(candidate.text[:verdict.end], out)
        rest = candidate.text[verdict.end:]
        return out + (self._scan(rest) if rest else [])

    def _show(self, text: str, out: list[str | ToolCall]) -> None:
        """`text` shown: the line and fence it leaves open are remembered. Text after
        JSON calls held: white space is held with them; anything else makes them text."""
        if not text:
            return
        if self._pending:
            if not text.strip(WHITE):
                self._pending.append((text, None))
                return
            pending, self._pending = self._pending, []
            for held, _ in pending:
                self._show(held, out)
        out.append(text)
        if "`" in text:
            for at in _line_starts(text, self._line_start):
                if text.startswith(FENCE, at):
                    self._in_fence = not self._in_fence
        self._line_start = text[-1] == "\n"

    def _is_quote(self, calls: list[ToolCall]) -> bool:
        """Whether the user's question holds each of `calls` as written: a quote."""
        return bool(self._quoted) and all(c.raw.strip() and " ".join(c.raw.split()) in self._quoted for c in calls)

    def _calls_or_quote(self, calls: list[ToolCall], written: str, out: list[str | ToolCall]) -> None:
        """`calls` made, or, when they quote the question, `written` shown as text."""
        if self._is_quote(calls):
            self._show(written, out)
        else:
            out += calls
            self._line_start = True

    def _close_if_ended(self, out: list[str | ToolCall]) -> list[str | ToolCall]:
        """Inside a call whose closing marker may have arrived: the call, then the
        text after it scanned again."""
        close = self._close
        if close is None:
            return out
        # Only the newest piece, and the end of what came before it, can hold it: a long
        # call costs the same per piece as a short one.
        window = self._body_end + self._body[-1]
        found = window.find(close)
        if found < 0:
            self._body_end = window[-(len(close) - 1):]
            return out
        body = "".join(self._body)
        end = len(body) - len(window) + found
        self._inside, self._body = False, []
        self._calls_or_quote(parse_body(body[:end], close), self._marker + body[:end + len(close)], out)
        rest = body[end + len(close):]
        if rest:
            out += self._scan(rest)
        return out


def _line_starts(text: str, at_start: bool) -> Iterator[int]:
    """The indexes in `text` where a line starts (0 too when `at_start`: the text
    before it ended a line); the last may be len(text)."""
    at = 0 if at_start else text.find("\n") + 1
    while at or at_start:
        yield at
        at_start = False
        at = text.find("\n", at) + 1


def _first_marker(text: str, opens: dict[str, str | None]) -> tuple[int, str | None]:
    best, found = len(text), None
    for marker in opens:
        i = text.find(marker)
        if 0 <= i < best:
            best, found = i, marker
    return best, found


def _partial_marker(text: str, opens: dict[str, str | None]) -> int:
    """The length of the longest end of `text` that begins some marker."""
    longest = 0
    for marker in opens:
        for n in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:n]):
                longest = n
                break
    return longest


_BARE_START = re.compile(r'\{\s*"(name|type|function)"')


def _could_be_call(text: str) -> bool:
    """Whether `text` (starting with "{") may still become `{"name": ...`."""
    if _BARE_START.match(text):
        return True
    probe = '{"name"'
    squeezed = re.sub(r"\s+", "", text)[:len(probe)]
    return probe.startswith(squeezed) or '{"type"'.startswith(squeezed) or '{"function"'.startswith(squeezed)


# ---------------------------------------------------------------- call bodies
def parse_body(body: str, close: str | None) -> list[ToolCall]:
    """The calls in what a marker enclosed (`close` tells which syntax it was)."""
    text = body.strip()
    if text.startswith("<function="):
        return [_xml_call(text)]
    if close is None and not text.startswith(("{", "[")) and "[ARGS]" in text:
        return [_args_call(part) for part in text.split("[TOOL_CALLS]") if part.strip()]
    if close is None and text.startswith("["):
        return _json_calls(text)
    if close is None and ";" in text and text.startswith("{"):
        parts = _split_top_level(text, ";")
        if len(parts) > 1:
            return [c for p in parts for c in _json_calls(p)]
    return _json_calls(text)


def _json_calls(text: str) -> list[ToolCall]:
    try:
        value = json_input.loads(text)
    except ValueError as e:
        return [ToolCall(guess_name(text), None, raw=text, error=f"the call is not valid JSON ({e})")]
    items = value if isinstance(value, list) else [value]
    return [call_of(item, text) for item in items] or [ToolCall("?", None, raw=text, error="an empty call")]


_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|$)", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?(?:</parameter>|(?=<parameter=)|$)", re.S)


def _xml_call(text: str) -> ToolCall:
    """Qwen3-Coder's `<function=NAME><parameter=KEY>VALUE</parameter></function>`."""
    match = _FUNCTION.match(text)
    if match is None:
        return ToolCall("?", None, raw=text, error="a <function=...> call that does not parse")
    arguments = {key.strip(): _xml_value(value) for key, value in _PARAMETER.findall(match.group(2))}
    return ToolCall(match.group(1).strip(), arguments, raw=text)


def _xml_value(value: str) -> Any:
    """A parameter's text: JSON where it is a number, true/false/null, object or list."""
    stripped = value.strip()
    if stripped[:1] in "{[-0123456789" or stripped in ("true", "false", "null"):
        try:
            return json_input.loads(stripped)
        except ValueError:
            pass
    return value


def _args_call(text: str) -> ToolCall:
    """Mistral's newer `NAME[ARGS]{json}` (or `NAME[CALL_ID]id[ARGS]{json}`)."""
    name, _, arguments = text.partition("[ARGS]")
    name = name.split("[CALL_ID]")[0].strip()
    try:
        value = json_input.loads(arguments) if arguments.strip() else {}
    except ValueError as e:
        return ToolCall(name or "?", None, raw=text, error=f"its arguments are not valid JSON ({e})")
    if not isinstance(value, dict):
        return ToolCall(name or "?", None, raw=text, error="its arguments must be a JSON object")
    return ToolCall(name, value, raw=text)


def _split_top_level(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside strings and brackets."""
    parts, depth, start, quoted, escaped = [], 0, 0, False, False
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]
