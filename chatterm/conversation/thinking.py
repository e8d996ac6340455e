"""Reasoning models think before they answer: the thinking part of a streamed reply,
told apart from the answer.

Local models write it between markers (`<think>...</think>`: Qwen3, QwQ, DeepSeek-R1
distills, whose templates may open the block in the prompt already; the harmony
channels of gpt-oss when its special tokens are shown); servers send it apart
(`reasoning_content` deltas), as `Thought` chunks. A block opens only at the start of
a reply: a reply that mentions `<think>` in its answer is left alone, and once the
answer has started each chunk passes through untouched (no per-token search).
"""

from __future__ import annotations

from collections.abc import Iterator

from chatterm.records import Thought

MARKERS = {"<think>": "</think>",
           "<|channel|>analysis<|message|>": "<|end|><|start|>assistant<|channel|>final<|message|>"}
OPENED_BY_PROMPT = "<think>"  # a prompt that ends with this has opened the block for the model


def opened(prompt_text: str) -> bool:
    """Whether the rendered prompt leaves the model inside a thinking block."""
    return prompt_text.rstrip().endswith(OPENED_BY_PROMPT)


class Splitter:
    """Cuts a stream of text into thinking (`Thought`) and answer (`str`) pieces."""

    def __init__(self, inside: bool = False):
        self.close = MARKERS[OPENED_BY_PROMPT] if inside else None  # the marker ending the open block
        self.answering = False  # the answer has begun: pass everything through
        self.thought = False  # a block was open at some point (the answer's leading blank lines go)
        self._held = ""  # text that may be the start of a marker

    def feed(self, chunk: str) -> Iterator[str]:
        if isinstance(chunk, Thought):
            self.thought = True
            yield chunk
            return
        if self.answering:
            yield chunk
            return
        text, self._held = self._held + chunk, ""
        while text:
            if self.close is not None:
                self.thought = True
                end = text.find(self.close)
                if end < 0:
                    keep = _partial(text, (self.close,))
                    if len(text) > keep:
                        yield Thought(text[:len(text) - keep])
                    self._held = text[len(text) - keep:]
                    return
                if end:
                    yield Thought(text[:end])
                text, self.close = text[end + len(self.close):], None
                continue
            stripped = text.lstrip()
            opener = next((m for m in MARKERS if stripped.startswith(m)), None)
            if opener is not None:
                self.close = MARKERS[opener]
                text = stripped[len(opener):]
                continue
            if _partial(stripped, tuple(MARKERS)) == len(stripped):  # only the start of a marker, or blank
                self._held = text
                return
            self.answering = True
            yield stripped if self.thought else text
            return

    def finish(self) -> Iterator[str]:
        """What was held back when the stream ends."""
        held, self._held = self._held, ""
        if held:
            yield Thought(held) if self.close is not None else held


def _partial(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that could begin one of `markers` (the
    whole of a text that is only blank space counts too, before an answer)."""
    if not text.strip():
        return len(text)
    for n in range(min(len(text), max(len(m) for m in markers) - 1), 0, -1):
        if any(m.startswith(text[-n:]) for m in markers):
            return n
    return 0
