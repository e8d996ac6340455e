"""Compaction: older turns summarized by the model itself, so a long chat keeps what
was said instead of dropping it when the window fills.

A summary is a message of its own in the session, `{"role": "summary", "content": ...}`,
placed where it stands: it stands for everything before it. The session keeps every
original turn; what the model sees is the system prompt with the latest summary pinned
to it, then the turns after that summary (`window`). A later compaction summarizes the
previous summary and the turns since. Exports and the transcript use the original turns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatterm.errors import ChattermError
from chatterm.settings import Decoding

ROLE = "summary"
KEEP_RECENT = 4  # messages kept verbatim after a summary (the last two exchanges)
SUMMARY_TOKENS = 400  # most tokens a summary may take
AUTO_AT = 0.85  # a prompt filling this share of the window is compacted first
SUMMARIZER = ("You condense conversations. Write a faithful summary of the conversation you are given: "
              "its facts, names, numbers, decisions and open questions, in the conversation's language. "
              "Leave out greetings and filler. Write notes, not a reply to anyone.")
PINNED = "Summary of the earlier conversation:"


def latest(messages: list[dict]) -> int | None:
    """The index of the latest summary (None: the conversation was never compacted)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == ROLE:
            return i
    return None


def window(messages: list[dict]) -> list[dict]:
    """What the model sees: the system prompt with the latest summary pinned to it, and
    the turns after the summary (`messages` itself when there is none)."""
    at = latest(messages)
    if at is None:
        return messages
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    pinned = f"{system}\n\n{PINNED}\n{messages[at]['content']}" if system else f"{PINNED}\n{messages[at]['content']}"
    return [{"role": "system", "content": pinned}, *[m for m in messages[at + 1:] if m["role"] != ROLE]]


def split_point(messages: list[dict]) -> int | None:
    """Where a new summary goes: before the last KEEP_RECENT messages, at the start of
    an exchange (a question); None when there is too little before it to compact."""
    start = (latest(messages) or 0) + 1
    point = len(messages) - KEEP_RECENT
    while point > start and messages[point]["role"] != "user":
        point -= 1
    return point if len(_turns(messages[start:point])) >= 2 else None


def _turns(messages: list[dict]) -> list[dict]:
    """The questions, replies and tool results among `messages` (not the system prompt or summaries)."""
    return [m for m in messages if m["role"] in ("user", "assistant", "tool")]


def transcript(messages: list[dict], point: int) -> tuple[str, str]:
    """What the summarizer reads: the previous summary, and the turns since it up to `point`."""
    at = latest(messages[:point])
    before = f"(Summary so far)\n{messages[at]['content']}\n\n" if at is not None else ""
    names = {"user": "User", "assistant": "Assistant", "tool": "Tool result"}
    lines = [f"{names[m['role']]}: {m['content']}" for m in messages[(at + 1 if at is not None else 0):point]
             if m["role"] in names and m["content"].strip()]
    return before, "\n\n".join(lines)


def request(text: str, keep: str) -> list[dict[str, str]]:
    ask = "Summarize this conversation" + (f"; keep especially: {keep}" if keep else "") + ".\n\n"
    return [{"role": "system", "content": SUMMARIZER}, {"role": "user", "content": ask + text}]


def fitted(text: str, room: int, count: Callable[[str], int]) -> str:
    """`text`, its oldest part left out until it fits `room` tokens (the newest kept)."""
    if not text or count(text) <= room:
        return text
    low, high = 0, len(text)
    while high - low > 64:
        mid = (low + high) // 2
        if count(text[mid:]) <= room:
            high = mid
        else:
            low = mid
    return "…" + text[high:]


def summary_tokens(n_ctx: int) -> int:
    return min(SUMMARY_TOKENS, max(32, n_ctx // 4))


def summarize(backend: Any, sampling: Any, messages: list[dict], point: int, keep: str,
              cancelled: Callable[[], bool]) -> tuple[str, int]:
    """(the model's summary of `messages` up to where it stands, that point): the
    previous summary is always read whole, then the turns since, as many as fit (up to
    `point`); "" when the model gave none."""
    budget = summary_tokens(backend.n_ctx)
    before, turns = transcript(messages, point)
    room = backend.n_ctx - budget - backend.measure(request(before, keep), None, False)[0] - 16
    # Fewer turns rather than a cut: the oldest that fit are summarized now, the rest stay
    # as they are for the next compaction (a single turn too large for it is cut).
    start = (latest(messages[:point]) or -1) + 1
    while room > 0 and point > start + 2 and backend.count(turns) > room:
        earlier = _earlier_question(messages, start, point)
        if earlier >= point or len(_turns(messages[start:earlier])) < 2 or cancelled():
            break  # no earlier question that leaves turns to summarize: the turns are cut instead
        point = earlier
        before, turns = transcript(messages, point)
    if cancelled():
        raise ChattermError("stopped: nothing was summarized")
    text = before + (fitted(turns, room, backend.count) if room > 0 else "")
    _, prompt = backend.measure(request(text, keep), None, False)
    plain = Decoding.of(sampling).updated(temperature=0.0, max_tokens=budget, seed=0)
    reply = backend.reply(prompt, plain, cancelled)
    for _ in reply:
        if cancelled():
            break
    backend.settle(prompt, reply)
    if cancelled():  # half a summary would stand for all the turns it never read
        raise ChattermError("stopped: nothing was summarized")
    return reply.text.strip(), point


def _earlier_question(messages: list[dict], start: int, point: int) -> int:
    """The question before `point` (after `start`), where a shorter compaction ends."""
    i = point - 1
    while i > start and messages[i]["role"] != "user":
        i -= 1
    return i if i > start else point
