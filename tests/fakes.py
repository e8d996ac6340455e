"""A scripted engine for tests of everything above the engines (never of engines)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from chatterm.conversation.local import LocalBackend
from chatterm.engines.base import Decoding, Engine, never
from chatterm.errors import EngineError
from chatterm.loader import Model
from chatterm.models.catalog import ModelSpec


class FakeEngine(Engine):
    """Vocabulary: one token per *byte* (ids 0-255), so multi-byte characters arrive
    split across tokens, plus id 256 = end of turn. Replies are queued byte strings,
    or `EngineError`s raised after the bytes before them (`fail`)."""

    name = "fake"
    EOT = 256

    def __init__(self, n_ctx: int = 4096):
        self.n_ctx = n_ctx
        self.device = "CPU"
        self.notes: list[str] = []
        self.chat_template = None
        self.bos_text = self.eos_text = ""
        self.add_bos, self.bos_id = False, None
        self.replies: list[tuple[bytes, EngineError | None]] = []
        self.prompts: list[list[int]] = []
        self.seeds: list[int | None] = []  # the sampling seed of each generation
        self.delay_s = 0.0
        self.closed = False

    def queue(self, *replies: str | bytes) -> None:
        self.replies += [(r.encode() if isinstance(r, str) else r, None) for r in replies]

    def fail(self, message: str, after: str = "") -> None:
        """The next reply streams `after`, then the engine fails with `message`."""
        self.replies.append((after.encode(), EngineError(message)))

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return list(text.encode("utf-8"))

    def piece(self, token: int, *, special: bool = False) -> bytes:
        return b"" if token == self.EOT else bytes([token])

    def is_eog(self, token: int) -> bool:
        return token == self.EOT

    def sample(self, prompt: Sequence[int], sampling: Decoding,
               cancelled: Callable[[], bool] = never) -> Iterator[int]:
        self.prompts.append(list(prompt))
        self.seeds.append(sampling.seed)
        reply, failure = self.replies.pop(0) if self.replies else (b"ok", None)
        if cancelled():  # as engines do when Ctrl-C comes while they read the prompt
            return
        for b in reply:
            if self.delay_s:
                time.sleep(self.delay_s)
            yield b
        if failure is not None:
            raise failure
        yield self.EOT
        while sampling.ignore_eog and self.replies:  # as a model does: it goes on past its end
            yield from self.replies.pop(0)[0]
            yield self.EOT

    def close(self) -> None:
        self.closed = True


def fake_loaded(*replies: str, n_ctx: int = 4096, name: str = "fake", system: str | None = "SYS",
                sampling: dict | None = None) -> Model:
    """A model ready to answer: a FakeEngine with `replies` queued, the chatml template,
    and an entry with `system` and `sampling` (max_tokens 200 unless given)."""
    engine = FakeEngine(n_ctx=n_ctx)
    engine.queue(*replies)
    spec = ModelSpec(name=name, source="path", location="x", system=system,
                     sampling={"max_tokens": 200, **(sampling or {})})
    return Model(LocalBackend(engine, "chatml"), spec, "x")
