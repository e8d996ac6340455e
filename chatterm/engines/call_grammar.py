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


def _converter() -> Any:
    """llama-cpp-python's JSON Schema to GBNF converter, from its pure-Python module (not
    the package's numpy-heavy __init__)."""
    from chatterm.engines.libraries import import_bare

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
        function = tool.get("function", tool)
        name = str(function["name"])
        rule = "tool-" + re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower()
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        arguments = converter.visit(converter.resolve_refs(schema, "tool"), f"{rule}-args")
        literal = json.dumps(json.dumps(name))  # the name as a JSON string, as a GBNF literal
        converter._add_rule(rule, f'"{{" space "\\"name\\"" space ":" space {literal} space "," space '
                                  f'"\\"arguments\\"" space ":" space {arguments} "}}" space')
        alternatives.append(rule)
    rules = _json_strings(converter.format_grammar())
    # One call a reply: once it is closed, the grammar allows only the end of the turn.
    start = "" if after_marker else '"<tool_call>" '
    return (f'root ::= {start}call-ws ({" | ".join(alternatives)}) call-ws "</tool_call>"\n'
            f'call-ws ::= [ \\t\\n]{{0,3}}\n' + rules)


def schema_gbnf(schema: dict[str, Any]) -> str:
    """GBNF for a JSON value matching `schema` (structured output: `--schema`)."""
    converter = _converter()
    converter.visit(converter.resolve_refs(_ranges(schema), "schema"), "")
    return _json_strings(converter.format_grammar())


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
    if out.get("type") == "integer" and isinstance(low, int) and isinstance(high, int) and 0 <= high - low <= RANGE_AS_ENUM:
        out = {k: v for k, v in out.items() if k not in ("type", "minimum", "maximum")}
        out["enum"] = list(range(low, high + 1))
    return out
