"""The grammar that keeps a tool call inside its tool's JSON Schema, for llama.cpp's
lazy grammar sampler: free text until the model writes `<tool_call>`, then only a
call `{"name": TOOL, "arguments": {...}}` that the tool's schema accepts, then
`</tool_call>`. Built in the engine worker, with llama-cpp-python's own converter of
JSON Schema to GBNF."""

from __future__ import annotations

import json
import re
from typing import Any

TRIGGER = r"[\s\S]*?(<tool_call>)[\s\S]*"  # llama.cpp matches the whole text so far; the group starts the call


def hermes_gbnf(tools: list[dict[str, Any]]) -> str:
    """GBNF for a `<tool_call>` block calling one of `tools`
    (OpenAI-style {"type": "function", "function": {name, parameters}})."""
    from chatterm.engines.libraries import import_bare

    grammar = import_bare("llama_cpp", "llama_grammar")  # pure Python: not the package's numpy-heavy __init__
    converter = grammar.SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
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
    rules = converter.format_grammar()
    # One call a reply: once it is closed, the grammar allows only the end of the turn.
    return (f'root ::= "<tool_call>" call-ws ({" | ".join(alternatives)}) call-ws "</tool_call>"\n'
            f'call-ws ::= [ \\t\\n]{{0,3}}\n' + rules)
