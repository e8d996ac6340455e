"""llama.cpp through llama-cpp-python: every architecture current llama.cpp supports."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Iterator, Sequence

from chatterm import hardware
from chatterm.engines.base import Engine, LoadOptions, Sampling
from chatterm.errors import EngineError


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """llama.cpp prints load diagnostics straight to fd 2; keep the terminal clean."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class LlamaCppEngine(Engine):
    name = "llama.cpp"

    def __init__(self, options: LoadOptions):
        try:
            import llama_cpp
        except ImportError as e:
            raise EngineError(f"llama-cpp-python is not installed ({e}); pip install llama-cpp-python") from None
        self._lib = llama_cpp
        gpu = hardware.llamacpp_gpu_layers(options.gpu_layers, llama_cpp.llama_supports_gpu_offload())
        try:
            with _quiet_stderr():
                _silence_logs(llama_cpp)
                self.llm = llama_cpp.Llama(
                    model_path=str(options.path), n_ctx=options.n_ctx, n_threads=options.threads,
                    n_threads_batch=options.threads, n_gpu_layers=gpu, flash_attn=True,
                    verbose=False)
        except (ValueError, RuntimeError, OSError) as e:
            raise EngineError(f"llama.cpp could not load {options.path}: {_reason(e)}") from None
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_ctx = self.llm.n_ctx()
        n_layers = llama_cpp.llama_model_n_layer(self.llm.model)
        self.device = f"CUDA ({min(gpu, n_layers) if gpu >= 0 else n_layers}/{n_layers} layers)" if gpu else "CPU"
        meta = self.llm.metadata
        self.chat_template = meta.get("tokenizer.chat_template")
        self.bos_id = self.llm.token_bos() if self.llm.token_bos() >= 0 else None
        eos = self.llm.token_eos()
        self.bos_text = self._special_text(self.bos_id)
        self.eos_text = self._special_text(eos if eos >= 0 else None)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._pieces: dict[int, bytes] = {}

    def _special_text(self, token: int | None) -> str:
        return "" if token is None else self.llm.detokenize([token], special=True).decode("utf-8", "replace")

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=special)

    def piece(self, token: int, *, special: bool = False) -> bytes:
        if special:
            return self.llm.detokenize([token], special=True)
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self.llm.detokenize([token], special=False)
        return cached

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def generate(self, prompt: Sequence[int], sampling: Sampling) -> Iterator[int]:
        seed = sampling.seed if sampling.seed is not None else random.randrange(1 << 31)
        self.llm.set_seed(seed)
        greedy = sampling.temperature <= 0 or sampling.top_k == 1
        yield from self.llm.generate(
            list(prompt), top_k=sampling.top_k, top_p=sampling.top_p,
            temp=0.0 if greedy else sampling.temperature,
            repeat_penalty=sampling.repeat_penalty, reset=True)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text



_LOG_CALLBACK: Any = None  # ctypes callback: must stay alive as long as llama.cpp may call it


def _silence_logs(llama_cpp: Any) -> None:
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, None)
