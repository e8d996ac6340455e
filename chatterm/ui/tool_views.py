"""Tool calls as the chat shows them, and the user's answer to each.

A call is shown exactly as it will run before the question
`run? [y]es [n]o [a]lways this tool [e]dit [v]iew`: its main argument (a command, a
program) folded past FOLD lines and viewable whole, every other argument on a line of
its own, write_file's change as a diff with the real path it writes. All of it by one
rule (`sanitize.visible`): a character that does not print (a carriage return, a
zero-width space, a bidi control) is shown as its escape, and the user is told how
many there are. In the transcript each call is one collapsed line
(`▸ run: pytest -q · exit 1 · 23 lines (/tool 3)`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chatterm.records import Message
from chatterm.tools.calls import ToolCall
from chatterm.ui.sanitize import hidden_count, visible

FOLD = 12  # lines of a call's arguments shown before "[v]iew" shows the rest
WIDE = 240  # characters of one line shown before it is cut (the whole is viewable)
HEADLINE = 60  # characters of a call's headline in its collapsed line


def headline(name: str, arguments: Any, key: str = "") -> str:
    """The one argument that says what a call does (run's command, a file's path),
    on one line and short."""
    value: Any = None
    if isinstance(arguments, dict):
        value = arguments.get(key) if key else None
        if value is None and len(arguments) == 1:
            value = next(iter(arguments.values()))
        if value is None:
            value = json.dumps(arguments, ensure_ascii=False)
    text = " ".join(visible(str(value if value is not None else arguments)).split())
    return text if len(text) <= HEADLINE else text[:HEADLINE - 1] + "…"


def collapsed(name: str, arguments: Any, summary: str, number: int, key: str = "") -> str:
    return f"▸ {name}: {headline(name, arguments, key)} · {summary}  (/tool {number})"


def _direct(call: ToolCall, key: str) -> bool:
    """Whether the call is shown (and edited) as its headline argument (a command, a
    program), the other arguments listed apart."""
    arguments = call.arguments
    return isinstance(arguments, dict) and bool(key) and isinstance(arguments.get(key), str)


def body(call: ToolCall, key: str = "") -> str:
    """The call's main text as it is shown: the headline argument (a command, a
    program), else all its arguments as JSON."""
    return call.arguments[key] if _direct(call, key) else call.arguments_text()  # type: ignore[index]


def others(call: ToolCall, key: str = "") -> list[str]:
    """Every argument `body` leaves out, one line each (`timeout = 3600`): whatever the
    tool receives is shown."""
    if not _direct(call, key):
        return []
    return [f"{name} = {json.dumps(value, ensure_ascii=False)}"
            for name, value in call.arguments.items() if name != key]  # type: ignore[union-attr]


def folded(text: str, lines: int = FOLD) -> tuple[str, int]:
    """The first `lines` lines of `text` (each cut at WIDE), and how many were left out."""
    every = text.split("\n")
    shown = [line if len(line) <= WIDE else line[:WIDE] + f"… (+{len(line) - WIDE} characters)"
             for line in every[:lines]]
    return "\n".join(shown), max(0, len(every) - lines)


def ask(call: ToolCall, tool: Any, show: Callable[[str], None], note: Callable[[str], None],
        answer: Callable[[str], str | None], edit: Callable[[str], str | None]) -> str:
    """Show `call` and get the user's decision: "y", "n", "a" (always this tool); an
    edit changes the call's arguments and asks again. `answer(question)` is one key
    (None at the end of input or Ctrl-C: no); `edit(text)` the text edited (None:
    kept as it was). `show` gets text already made visible."""
    key = getattr(tool, "headline", "")
    while True:
        text = body(call, key)
        extra = others(call, key)
        preview = tool.preview(call.arguments) if getattr(tool, "preview", None) and call.arguments else ""
        shown_text, shown_preview = visible(text), visible(preview)
        note(f"▸ {call.purpose}:" if call.purpose else f"▸ the model asks to call {call.name}:")
        lines, left = folded(shown_text)
        show(lines)
        if left:
            note(f"  … {left} more lines ([v]iew shows them all)")
        for line in extra:
            show(f"  {visible(line)}")
        if shown_preview:
            diff, more = folded(shown_preview, 3 * FOLD)
            show(diff)
            if more:
                note(f"  … {more} more lines of the change ([v]iew shows them all)")
        hidden = sum(hidden_count(t) for t in (text, preview, *extra))
        if hidden:
            many = hidden != 1
            note(f"  ({hidden} character{'s' if many else ''} that {'do' if many else 'does'} not print "
                 f"{'are' if many else 'is'} shown as escapes: "
                 "\\r, \\u200b...; a backslash of the text itself is shown as \\\\)")
        while True:
            reply = answer(f"{call.name}? [y]es [N]o [a]lways {call.name} [e]dit [v]iew")
            if reply is None:
                return "n"
            reply = reply.strip().lower()[:1]
            if reply in ("y", "n", "a"):
                return reply
            if reply == "v":
                show(shown_text)
                for line in extra:
                    show(f"  {visible(line)}")
                if shown_preview:
                    show(shown_preview)
                continue
            if reply == "e":
                break
            note("  y: run it · n: don't (the model is told) · a: run this tool without asking, this session · "
                 "e: edit the call · v: view it whole")
        edited = edit(text)
        if edited is None or edited == text:
            continue
        if _direct(call, key):
            call.arguments = {**call.arguments, key: edited}  # type: ignore[dict-item]
            continue
        try:
            value = json.loads(edited)
        except ValueError as e:
            note(f"  not valid JSON ({e}); the call is as it was")
            continue
        if not isinstance(value, dict):
            note("  the arguments must be a JSON object; the call is as it was")
            continue
        call.arguments = value


def find_call(messages: list[Message], result_at: int) -> ToolCall | None:
    """The call whose result is `messages[result_at]`: in the assistant message before it."""
    wanted = messages[result_at].tool_call_id
    for i in range(result_at - 1, -1, -1):
        m = messages[i]
        if m.role == "assistant":
            return next((call for call in m.tool_calls if call.id == wanted), None)
    return None
