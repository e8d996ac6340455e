"""Keeping a conversation inside the context window: the oldest turns are left out
(never the system prompt) until the prompt leaves room for a reply. One rule for local
and remote chats; each measures prompts its own way."""

from __future__ import annotations

from typing import Callable, TypeVar

from chatterm.errors import ContextOverflowError

P = TypeVar("P")


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
    dropped = 0
    while True:
        size, prompt = measure(system + rest)
        if size + reserve <= n_ctx or len(rest) <= 1 and size < n_ctx:
            return prompt, dropped
        if len(rest) <= 1:
            raise ContextOverflowError(f"the prompt is {size:,} tokens{size_note}; the context window holds "
                                       f"{n_ctx:,} (shorten it, or raise --ctx)")
        cut = 2 if len(rest) > 2 and rest[0]["role"] == "user" else 1  # a whole exchange
        rest = rest[cut:]
        dropped += cut
