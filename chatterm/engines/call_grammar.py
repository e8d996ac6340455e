"""The grammar that keeps a tool call inside its tool's JSON Schema: free text until
the model writes `<tool_call>`, then only a call `{"name": TOOL, "arguments": {...}}`
that the tool's schema accepts, then `</tool_call>` and the end of the turn.

The engine watches for the marker itself (`MarkerWatch`: the last few bytes, a constant
cost a token) and only then puts the grammar in front of its sampler chain. llama.cpp's
own lazy grammar matches its trigger pattern against all the text generated so far at
every token, a cost that grows with the reply. Built in the engine worker, with llama-cpp-python's own converter of
JSON Schema to GBNF."""

from __future__ import annotations

import json
import re
from typing import Any

from chatterm.engines.libraries import import_bare

MARKER = b"<tool_call>"


class MarkerWatch:
    """Whether the tokens' bytes so far have just completed MARKER, looking at no more
    than the marker's length of them."""

    def __init__(self, marker: bytes = MARKER):
        self.marker = marker
        self._tail = b""

    def feed(self, piece: bytes) -> bytes | None:
        """None, or (the marker just completed) what followed it in `piece`."""
        window = self._tail + piece
        at = window.find(self.marker)
        if at >= 0:
            self._tail = b""
            return window[at + len(self.marker):]
        self._tail = window[-(len(self.marker) - 1):]
        return None


class JsonCallWatch:
    """Whether the tokens' bytes so far have just completed the head of a call written
    as JSON (`tools.json_calls`): at a line start, an optional ```json fence, then
    `{"name": "TOOL"` naming an offered tool. Only the name's closing quote can complete
    one, so a piece without a quote costs a concatenation; the window is one line and
    a little (WINDOW bytes), so the cost stays the same at token 10 and 10,000."""

    WINDOW = 256

    def __init__(self, names: list[str]):
        alternatives = b"|".join(re.escape(n.encode()) for n in sorted(names, key=len, reverse=True))
        self._head = re.compile(rb'\n(```(?:json|xml|JSON)?[ \t]*\n)?[ \t\r\n]*\{[ \t\r\n]*"name"[ \t\r\n]*:'
                                rb'[ \t\r\n]*"(' + alternatives + rb')"')
        self._window = b"\n"  # the reply starts at a line start

    def feed(self, piece: bytes) -> tuple[str, bool, bytes] | None:
        """None, or (the head just completed) the tool's name, whether it was fenced,
        and what followed the name's closing quote in `piece`."""
        window = (self._window + piece)[-self.WINDOW:]
        self._window = window
        if b'"' not in piece:
            return None
        fresh = len(window) - len(piece)
        for match in self._head.finditer(window):
            if match.end() > fresh:
                self._window = b""
                return match.group(2).decode(), match.group(1) is not None, window[match.end():]
        return None


def call_names(tools: list[dict[str, Any]] | None) -> list[str]:
    """The names of `tools` (OpenAI-style {"type": "function", "function": {name, ...}})."""
    return [str(t.get("function", t)["name"]) for t in tools or ()]


# What follows a call's name, white space apart, before its arguments' object.
_AFTER_NAME = (",", '"arguments"', ":")


def json_call_gbnf(tool: dict[str, Any], fenced: bool, written: bytes) -> str | None:
    """GBNF for the rest of a call to `tool` written as JSON, from the name's closing
    quote on, where the model has `written` more already (None: that is not the way
    to `"arguments":`). A fenced call ends with its fence; then the turn ends."""
    remaining = _remaining(written.decode("utf-8", "replace"))
    if remaining is None:
        return None
    converter = _converter()
    arguments = _arguments_rule(converter, tool, "call-args")
    head = " ".join(f"{json.dumps(piece)} space" for piece in remaining)
    close = ' "```"' if fenced else ""
    return f'root ::= {head} {arguments} "}}" call-ws{close}\n{CALL_WS}' + _json_strings(converter.format_grammar())


def _remaining(written: str) -> list[str] | None:
    """The literals of _AFTER_NAME still to come after `written` (white space between
    them is free); None when `written` is not on the way."""
    i = 0
    for n, literal in enumerate(_AFTER_NAME):
        while i < len(written) and written[i] in " \t\r\n":
            i += 1
        if i == len(written):
            return list(_AFTER_NAME[n:])
        if written.startswith(literal, i):
            i += len(literal)
            continue
        if literal.startswith(written[i:]):
            return [literal[len(written) - i:], *_AFTER_NAME[n + 1:]]
        return None
    while i < len(written) and written[i] in " \t\r\n":
        i += 1
    return [] if i == len(written) else None


def _converter() -> Any:
    """llama-cpp-python's JSON Schema to GBNF converter, from its pure-Python module (not
    the package's numpy-heavy __init__)."""
    grammar = import_bare("llama_cpp", "llama_grammar")
    if grammar is None:
        raise RuntimeError("llama-cpp-python is not installed")
    return grammar.SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def hermes_gbnf(tools: list[dict[str, Any]], after_marker: bool = False) -> str:
    """GBNF for a `<tool_call>` block calling one of `tools` (OpenAI-style {"type":
    "function", "function": {name, parameters}}); `after_marker`: only what follows the
    marker, once the model has written it."""
    converter = _converter()
    alternatives = []
    for tool in tools:
        name = str(tool.get("function", tool)["name"])
        rule = "tool-" + re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower()
        arguments = _arguments_rule(converter, tool, f"{rule}-args")
        literal = json.dumps(json.dumps(name))  # the name as a JSON string, as a GBNF literal
        converter._add_rule(rule, f'"{{" space "\\"name\\"" space ":" space {literal} space "," space '
                                  f'"\\"arguments\\"" space ":" space {arguments} "}}" space')
        alternatives.append(rule)
    rules = _json_strings(converter.format_grammar())
    # One call a reply: once it is closed, the grammar allows only the end of the turn.
    start = "" if after_marker else '"<tool_call>" '
    return f'root ::= {start}call-ws ({" | ".join(alternatives)}) call-ws "</tool_call>"\n{CALL_WS}' + rules


CALL_WS = "call-ws ::= [ \\t\\n]{0,3}\n"  # the white space a call may have around it


def _arguments_rule(converter: Any, tool: dict[str, Any], rule: str) -> str:
    """The rule (named `rule`) for `tool`'s arguments object, added to `converter`."""
    schema = tool.get("function", tool).get("parameters") or {"type": "object", "properties": {}}
    check_bounds(schema)
    return converter.visit(converter.resolve_refs(schema, "tool"), rule)


def schema_gbnf(schema: dict[str, Any]) -> str:
    """GBNF for a JSON value matching `schema` (structured output: `--schema`)."""
    check_bounds(schema)
    converter = _converter()
    converter.visit(converter.resolve_refs(_ranges(schema), "schema"), "")
    gbnf = _json_strings(converter.format_grammar())
    if len(gbnf) > GRAMMAR_CAP:
        raise SchemaTooLarge(f"its grammar would be {len(gbnf):,} bytes, more than the {GRAMMAR_CAP:,} chatterm makes")
    return gbnf


REPEAT_CAP = 10_000  # the largest length or count a grammar spells out (its size grows with it)
GRAMMAR_CAP = 4 << 20  # bytes of one grammar
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_PATTERN_COUNT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


class SchemaTooLarge(ValueError):
    """A schema whose grammar could not be bounded."""


def check_bounds(schema: Any) -> None:
    """SchemaTooLarge, saying where, for a length, count or pattern repetition over
    REPEAT_CAP anywhere in `schema` (a grammar spells each out: minLength 1e9 would be
    gigabytes)."""
    stack, seen = [(schema, "$")], 0
    while stack:
        node, where = stack.pop()
        seen += 1
        if seen > 200_000:
            raise SchemaTooLarge("more than 200,000 nodes")
        if isinstance(node, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key in _COUNTS:
            value = node.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > REPEAT_CAP:
                raise SchemaTooLarge(f"{where}: {key} {value:,.0f} is more than the {REPEAT_CAP:,} "
                                     "a grammar can spell out")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            for low, high in _PATTERN_COUNT.findall(pattern):
                if int(low) > REPEAT_CAP or (high and int(high) > REPEAT_CAP):
                    raise SchemaTooLarge(f"{where}: pattern repeats {high or low} times, more than the "
                                         f"{REPEAT_CAP:,} a grammar can spell out")
        stack.extend((value, f"{where}.{key}") for key, value in node.items() if isinstance(value, (dict, list)))


def _json_strings(gbnf: str) -> str:
    """The converter's strings admit raw control characters (a newline inside a string),
    which JSON does not: they must be escaped, as llama.cpp's own converter has it."""
    return gbnf.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]')


RANGE_AS_ENUM = 1000  # an integer range this wide or narrower becomes the list of its values


def _ranges(schema: Any) -> Any:
    """`schema` with each bounded integer range written as an enum of its values (the
    converter ignores minimum and maximum; an enum it keeps exactly)."""
    if isinstance(schema, list):
        return [_ranges(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _ranges(v) for k, v in schema.items()}
    low, high = out.get("minimum"), out.get("maximum")
    if (out.get("type") == "integer" and isinstance(low, int) and isinstance(high, int)
            and 0 <= high - low <= RANGE_AS_ENUM):
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = list(range(low, high + 1))
    return out
