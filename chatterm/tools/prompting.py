"""Tools, calls and results in the terms a prompt takes them.

A chat template with tool syntax (Qwen2.5's, Llama 3.1's, Mistral's) gets them as
Hugging Face templates expect: `tools=[...]` in the render context, assistant
messages with `tool_calls` (arguments as objects), `tool` messages. A template
without any (chatml, SmolLM2's) gets them as text in the Hermes convention, which
small models fine-tuned on function calling know: the tools described in the
system prompt, calls as `<tool_call>` blocks in the reply, results as
`<tool_response>` blocks in a user turn. A server gets OpenAI's shapes."""

from __future__ import annotations

import json
from typing import Any


def native(messages: list[dict]) -> list[dict[str, Any]]:
    """Messages for a template with tool syntax."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "tool", "content": m["content"], "name": m.get("name", ""),
                        "tool_call_id": m.get("tool_call_id", "")})
        elif m.get("tool_calls"):
            out.append({"role": "assistant", "content": m["content"], "tool_calls": m["tool_calls"]})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def as_text(messages: list[dict], tools: list[dict] | None) -> list[dict[str, str]]:
    """Messages for a template with no tool syntax: every tool thing in plain text."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "tool":
            block = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1]["content"].startswith("<tool_response>"):
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + block}
            else:
                out.append({"role": "user", "content": block})
        elif m.get("tool_calls"):
            calls = "".join(f"\n<tool_call>\n{json.dumps(_call(c), ensure_ascii=False)}\n</tool_call>"
                            for c in m["tool_calls"])
            out.append({"role": "assistant", "content": (m["content"] + calls).lstrip("\n")})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    if tools:
        described = describe(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + described}
        else:
            out.insert(0, {"role": "system", "content": described})
    return out


def describe(tools: list[dict]) -> str:
    """The tools as a system prompt teaches them (the Hermes convention)."""
    signatures = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return ("# Tools\n\nYou may call functions to help with the user's request. Their signatures, "
            f"one JSON object a line, are within <tools></tools> XML tags:\n<tools>\n{signatures}\n</tools>\n\n"
            "To call a function, write a JSON object with its name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n'
            "The result comes back within <tool_response></tool_response> tags.")


def _call(call: dict) -> dict[str, Any]:
    function = call.get("function", {})
    return {"name": function.get("name", ""), "arguments": function.get("arguments", {})}


def openai(messages: list[dict]) -> list[dict[str, Any]]:
    """Messages as an OpenAI-compatible server takes them (arguments as JSON text)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "tool", "content": m["content"], "tool_call_id": m.get("tool_call_id", "")})
        elif m.get("tool_calls"):
            out.append({"role": "assistant", "content": m["content"] or None, "tool_calls": [
                {"id": c.get("id", ""), "type": "function",
                 "function": {"name": c["function"]["name"],
                              "arguments": json.dumps(c["function"].get("arguments", {}), ensure_ascii=False)}}
                for c in m["tool_calls"]]})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out
