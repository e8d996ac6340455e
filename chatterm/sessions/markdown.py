"""A session as people read it: the Markdown transcript, and the marks a message
carries (its rating, which version of how many it is)."""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from chatterm.records import RATINGS, Finish, Message

__all__ = ["RATINGS", "transcript"]


class Transcribed(Protocol):
    """What a transcript shows of a session (`store.Session` is one)."""

    name: str
    model: str
    engine: str
    messages: list[dict[str, Any]]


def transcript(session: Transcribed) -> str:
    """The session as a Markdown transcript (`/save NAME.md`, `chatterm export -f md`)."""
    out = [f"# chatterm session {session.name}", "",
           f"Model: {session.model} ({session.engine})", ""]
    titles = {"system": "System", "user": "You", "assistant": "Assistant", "tool": "Tool result",
              "summary": "Summary (what the model sees in place of the turns above)"}
    for stored in session.messages:
        m = Message.of(stored)
        title = titles[m.role] + (f" ({m.name}: {m.summary})" if m.role == "tool" else "")
        out.append(f"## {title}")
        out.append("")
        if m.role == "tool":
            out.append(_fenced(m.content))
        else:
            out.append(m.content + _fence_left_open(m.content))
        for call in m.tool_calls:
            out.append("")
            out.append(f"Calls `{call.name or '?'}`:")
            out.append(_fenced(json.dumps(call.arguments or {}, ensure_ascii=False, indent=1), "json"))
        if m.finish in (Finish.CANCELLED, Finish.ERROR):
            out.append("")
            out.append("*(reply cut)*")
        marks = [text for text in (m.rating.text if m.rating else "", m.versions_text) if text]
        if marks:
            out.append("")
            out.append(f"*({'; '.join(marks)})*")
        out.append("")
    return "\n".join(out)


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def _fence_left_open(text: str) -> str:
    """The line that closes a code fence `text` opened and never closed ("" if none),
    so that the rest of the transcript is not swallowed into it."""
    open_marker = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if not match:
            continue
        marker, rest = match.groups()
        if open_marker is None:
            open_marker = marker
        elif marker[0] == open_marker[0] and len(marker) >= len(open_marker) and not rest.strip():
            open_marker = None
    return "" if open_marker is None else "\n" + open_marker


def _fenced(text: str, language: str = "") -> str:
    """`text` in a code fence longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"
