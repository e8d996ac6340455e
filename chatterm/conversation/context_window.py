"""Keeping a conversation inside the context window: the oldest turns are left out
(never the system prompt) until the prompt leaves room for a reply. One rule for local
and remote chats; each measures prompts its own way.

The cost does not grow with the history: the candidates (the history less its oldest
0, 1, 2... exchanges) are searched from the newest end, doubling the span each step,
then halving between the last that fitted and the first that did not, so a prompt is
measured O(log n) times and none is much larger than the one that fits. A short
history is measured whole first: it usually fits, in one measure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from chatterm.errors import ContextOverflowError

P = TypeVar("P")
WHOLE_FIRST_CHARS = 4  # per token of the window: a history shorter than this is measured whole first


def reply_reserve(n_ctx: int, max_tokens: int) -> int:
    return min(max_tokens, max(16, n_ctx // 4))


def fit(messages: list[dict], measure: Callable[[list[dict]], tuple[int, P]], n_ctx: int,
        reserve: int, size_note: str = "") -> tuple[P, int]:
    """(measure's result for the newest messages that fit, how many were left out).
    `measure` gives a prompt's size in tokens and whatever the caller needs from it;
    `size_note` qualifies that size in the error (how it was counted).
    The newest message alone too large: ContextOverflowError."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    rest = messages[len(system):]
    starts = _starts(rest)
    newest = len(starts) - 1
    results: dict[int, tuple[int, P]] = {}

    def fits(k: int) -> bool:
        """Whether the history from candidate `k` on leaves room for a reply (the
        newest message alone need only fit)."""
        if k not in results:
            results[k] = measure(system + rest[starts[k]:])
        size = results[k][0]
        return size + reserve <= n_ctx or k == newest and size < n_ctx

    if sum(len(m["content"]) for m in rest) <= WHOLE_FIRST_CHARS * n_ctx and fits(0):
        return results[0][1], 0
    if not fits(newest):
        raise ContextOverflowError(f"the prompt is {results[newest][0]:,} tokens{size_note}; the context window "
                                   f"holds {n_ctx:,} (shorten it, or raise --ctx)")
    best, failed, step = newest, -1, 1  # fits(best); not fits(failed) (-1: none found yet)
    while best > 0:
        k = max(0, best - step)
        if not fits(k):
            failed = k
            break
        best, step = k, step * 2
    while best - failed > 1 and failed >= 0:
        middle = (best + failed) // 2
        if fits(middle):
            best = middle
        else:
            failed = middle
    return results[best][1], starts[best]


def _starts(rest: list[dict]) -> list[int]:
    """Where the kept history may start, oldest first: each step leaves out a whole
    exchange (a question with its reply), or a lone message; the last keeps only the
    newest message."""
    starts = [0]
    i = 0
    while len(rest) - i > 1:
        i += 2 if len(rest) - i > 2 and rest[i]["role"] == "user" else 1
        starts.append(i)
    return starts
