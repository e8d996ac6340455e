"""A scripted engine for tests of everything above the engines (never of engines)."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from chatterm.engines.base import Engine, Sampling, never


class FakeEngine(Engine):
    """Vocabulary: one token per *byte* (ids 0-255), so multi-byte characters arrive
    split across tokens, plus id 256 = end of turn. Replies are queued byte strings."""

    name = "fake"
    EOT = 256

    def __init__(self, n_ctx: int = 4096):
        self.n_ctx = n_ctx
        self.device = "CPU"
        self.notes: list[str] = []
        self.chat_template = None
        self.bos_text = self.eos_text = ""
        self.add_bos, self.bos_id = False, None
        self.replies: list[bytes] = []
        self.prompts: list[list[int]] = []
        self.delay_s = 0.0

    def queue(self, *replies: str | bytes) -> None:
        self.replies += [r.encode() if isinstance(r, str) else r for r in replies]

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return list(text.encode("utf-8"))

    def piece(self, token: int, *, special: bool = False) -> bytes:
        return b"" if token == self.EOT else bytes([token])

    def is_eog(self, token: int) -> bool:
        return token == self.EOT

    def generate(self, prompt: Sequence[int], sampling: Sampling,
                 cancelled: Callable[[], bool] = never) -> Iterator[int]:
        import time
        self.prompts.append(list(prompt))
        reply = self.replies.pop(0) if self.replies else b"ok"
        for b in reply:
            if self.delay_s:
                time.sleep(self.delay_s)
            yield b
        yield self.EOT
