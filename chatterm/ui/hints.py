"""One-time hints for what a newcomer would not know to ask: a Chinese question to a
model that does not speak Chinese, a thinking switch the model does not have."""

from __future__ import annotations

import re

from chatterm.errors import ChattermError
from chatterm.models.catalog import Catalog, ModelSpec

SUGGESTED = "qwen2.5-1.5b-instruct"  # README's pick: Chinese and English on 2 GB of RAM
_HAN = re.compile("[\u3400-\u9fff\uf900-\ufaff]")
CHINESE = "zh"


def think_ignored(switch: str) -> str:
    """`switch` (how thinking was chosen here: "--think/--no-think", "/set think") has
    no effect on this model."""
    return (f"this model's chat template has no switch for thinking: {switch} has no effect "
            "(it thinks as it was trained to)")


def chinese_hint(text: str, spec: ModelSpec, switch: str) -> str | None:
    """A hint naming a Chinese-capable catalogue entry, when `text` is Chinese and the
    model's entry says it does not speak it (None otherwise: unknown models get none).
    `switch` is how to change models here ("/model" or "-m")."""
    if not spec.languages or CHINESE in spec.languages or not _HAN.search(text):
        return None

    try:
        models = list(Catalog.load().models.values())
    except ChattermError:
        return None
    chinese = [m for m in models if CHINESE in m.languages and not m.remote]
    if not chinese:
        return None
    have = [m for m in chinese if m.source == "package" or m.downloaded()]
    best = (have or [m for m in chinese if m.name == SUGGESTED] or chinese)[0]
    pull = "" if have else f" (chatterm pull {best.name} first)"
    return (f"{spec.name} is not a Chinese model (languages: {', '.join(spec.languages)}); "
            f"for Chinese: {switch} {best.name}{pull}")


def tools_as_text() -> str:
    """Tools are on and the model's chat template has no tool syntax."""
    return ("this model's chat template has no tool syntax: chatterm describes the tools in the system prompt "
            "and reads <tool_call> blocks (a small model may never write one; --tool-choice required makes it)")


def schema_unheld() -> str:
    """A JSON Schema asked of an engine without grammars."""
    return ("ctransformers has no grammar: the answer is not held to the schema, only checked against it "
            "(--engine llama.cpp holds it)")
