"""The one small interface every engine implements.

An engine turns token ids into sampled token ids and knows its vocabulary. Everything
above it (UTF-8 assembly, stop strings, limits, cancellation, chat templates) lives once
in `chatterm.conversation`, so both engines behave alike, whether they run in this
process or isolated in a worker (`chatterm.engines.isolated`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from chatterm.errors import EngineError
from chatterm.models.fit import context_size
from chatterm.settings import Decoding, Sampling

if TYPE_CHECKING:
    from chatterm.models.gguf import GGUFFile

__all__ = ["Decoding", "Engine", "LoadOptions", "Sampling", "Token", "context_size", "default_threads", "never"]



@dataclass
class LoadOptions:
    path: Path
    n_ctx: int | None  # None: the model's trained context, capped at DEFAULT_CTX_CAP
    threads: int
    gpu_layers: int | str = "auto"  # a count, or "auto": what fits when CUDA is usable
    fitted_layers: int = -1  # for "auto": the layers that fit the free VRAM (chatterm.models.fit); -1 all
    model_type: str | None = None  # ctransformers' model type for GGML files
    parsed: GGUFFile | None = None  # the file as already read and validated, if GGUF
    safe: bool = False  # after repeated crashes: CPU only, no weight repacking
    native_logs: bool = False  # let the library log to stderr (the worker's log file)
    speculate: str = "auto"  # speculative decoding: "auto", "ngram", "draft" or "off" (llama.cpp)
    draft: str | None = None  # the draft model's file (--draft; a catalogue entry's `draft`)
    draft_gpu_layers: int = 0  # its layers on the GPU, as the memory fit placed it (-1: all)
    reproducible: bool = False  # batch-invariant kernels: greedy replies the same with and without drafts
    # LoRA adapters (llama.cpp): (file, scale) each, checked against the model
    # (`models.adapters`) before a worker starts; scale 0 loads one switched off.
    adapters: tuple[tuple[str, float], ...] = ()


SAFE_SETTINGS = "safe settings after repeated crashes: CPU only, no weight repacking"


def never() -> bool:
    return False


def default_threads() -> int:
    """Cores this process may use. More threads than cores is catastrophic for decode
    speed (4 threads on 2 cores: 42 vs 120 tokens/s; docs/engines.md)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Token(NamedTuple):
    """One sampled token with what the reply needs of it: its bytes (empty for control
    tokens) and whether it ends the generation."""

    id: int
    piece: bytes
    eog: bool


class Engine(ABC):
    """A loaded model. Not thread-safe: one generation at a time."""

    name: str  # "llama.cpp", "ctransformers" (an isolated engine: the one its worker runs now)

    n_ctx: int
    device: str  # for people: "CPU" or "CUDA (30/30 layers)"
    notes: list[str]  # settings chosen for this machine, and why (shown once, and by /stats)
    chat_template: str | None  # the file's own Jinja template, if any
    bos_text: str
    eos_text: str
    add_bos: bool
    bos_id: int | None
    # The texts `tokenize(special=True)` makes special tokens: "control" ones, and
    # "user" (user-defined) ones, which llama.cpp matches even without `special`.
    markup: dict[str, list[str]] = {"control": [], "user": []}
    reused: int | None = None  # tokens of the last prompt taken from the cache, not evaluated (None: unknown)

    @property
    def speculation(self) -> dict | None:
        """Speculative decoding's tally (`speculation.Tally.report`), if any."""
        return None

    @abstractmethod
    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of `text` (no BOS added); `special` parses control-token text."""

    @abstractmethod
    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes one token stands for; control tokens are empty unless `special`."""

    @abstractmethod
    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, end-of-turn, ...)."""

    def sample(self, prompt: Sequence[int], sampling: Decoding,
               cancelled: Callable[[], bool] = never) -> Iterator[int]:
        """Evaluate `prompt` and yield sampled token ids until the consumer stops (what
        each engine in this process implements; `generate` is what callers use).

        The longest common prefix with what the engine evaluated before is reused, so a
        new turn (or a continuation) evaluates only the new tokens. A token is evaluated
        only when the next one is asked for, so stopping costs nothing extra.
        `cancelled` is polled while the prompt is evaluated (which can take minutes on
        a long history): once it is true the generator ends without a token."""
        raise NotImplementedError

    def generate(self, prompt: Sequence[int], sampling: Decoding, cancelled: Callable[[], bool] = never,
                 limit: int | None = None) -> Generator[Token, None, None]:
        """The reply's tokens, each with its bytes and end flag: at most `limit` (the
        caller's budget, decided once: `Generation`), ending after an end-of-generation
        token unless `sampling.ignore_eog`, and when `cancelled` (checked per token)."""
        count = 0
        if limit is not None and limit <= 0:
            return
        ids = self.sample(prompt, sampling, cancelled)
        special = sampling.special_pieces
        try:
            for token in ids:
                eog = self.is_eog(token)
                yield Token(token, self.piece(token, special=special and not eog), eog)
                count += 1
                if (eog and not sampling.ignore_eog) or count == limit or cancelled():
                    return
        finally:
            ids.close()  # type: ignore[attr-defined]

    def wait_ready(self, cancelled: Callable[[], bool] = never) -> bool:
        """Wait until the model is loaded; False if `cancelled` first. An engine in this
        process is loaded once constructed; one in a worker loads in the background."""
        return True

    def state(self) -> str:
        """"loading", "ready", "failed" or "crashed", without waiting."""
        return "ready"

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return b"".join(self.piece(t, special=special) for t in tokens).decode("utf-8", "replace")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def save_state(self, path: str, keep: int | None = None) -> dict[str, Any]:
        """The cache of the tokens evaluated (the first `keep` of them: the rest is
        dropped), written to `path` atomically: {"tokens": the ids saved, "digest": the
        file's SHA-256} ({"tokens": []}: this engine cannot)."""
        return {"tokens": []}

    def load_state(self, path: str, digest: str, expected: list[int]) -> int:
        """The cache saved at `path` loaded, when the file has `digest` and the tokens it
        holds are a prefix of `expected`: how many (0: nothing loaded, the cache empty)."""
        return 0

    def set_adapters(self, scales: list[float]) -> bool:
        """The LoRA adapters loaded with the model (`LoadOptions.adapters`, in order) at
        `scales` (0: off). What was evaluated is forgotten when the set in effect changes
        (an adapter changes every position); returns whether it did."""
        if any(scales):
            raise EngineError(f"the {self.name} engine cannot apply LoRA adapters")
        return False

    def reset(self) -> None:
        """Forget what was evaluated: the next prompt is evaluated in full."""

    def close(self) -> None:
        """Free the model now rather than at interpreter exit."""
