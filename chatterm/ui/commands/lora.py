"""/lora: the LoRA adapters loaded with the model, switched and scaled mid-chat without
reloading the base (docs/guide/lora.md)."""

from __future__ import annotations

from collections.abc import Iterator

from prompt_toolkit.completion import Completion

from chatterm.errors import ChattermError
from chatterm.models.adapters import check_scale
from chatterm.settings import parse_number
from chatterm.ui.commands.registry import CommandContext, command, complete_words

USAGE = "usage: /lora, /lora on NAME, /lora off NAME, /lora scale NAME X"


def complete_lora(arg: str) -> Iterator[Completion]:
    yield from complete_words(arg, [("on", "apply NAME again"), ("off", "leave NAME out"),
                                    ("scale", "NAME X: apply NAME at X")])


@command("lora", "[on|off|scale NAME]", complete=complete_lora)
def _lora(ctx: CommandContext, arg: str) -> None:
    """The LoRA adapters over the model: list them, switch one on or off, or set its
    scale (the base model stays loaded; the next reply reads the history again)."""
    model = ctx.loaded
    words = arg.split()
    if not words:
        if not model.adapters:
            ctx.note("no LoRA adapters: chatterm --lora PATH[:SCALE] loads one (or `adapters` in models.toml)")
        for a in model.adapters:
            state = f"scale {a.scale:g}" if a.scale else f"off (on: scale {a.loaded_scale:g})"
            ctx.note(f"{a.name:<20} {state:<24} sha256 {a.sha256[:12]}  {a.path}")
        return
    if words[0] in ("on", "off") and len(words) == 2:
        adapter = model.adapter(words[1])
        scale = (adapter.scale or adapter.loaded_scale) if words[0] == "on" else 0.0
    elif words[0] == "scale" and len(words) == 3:
        adapter = model.adapter(words[1])
        try:
            scale = check_scale(parse_number(words[2]), f"/lora scale {adapter.name}")
        except ValueError as e:
            raise ChattermError(f"{e}; {USAGE}") from None
    else:
        raise ChattermError(USAGE)
    if not ctx.wait_for_engine(model):
        return
    if scale:
        adapter.loaded_scale = scale  # what `on` comes back to
    changed = model.set_adapter(adapter.name, scale)
    now = f"at scale {scale:g}" if scale else "off"
    ctx.note(f"{adapter.name} {now}" + (": the next reply reads the conversation again" if changed else ""))
