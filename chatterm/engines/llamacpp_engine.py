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
        self.flash_attn = flash_attention(gpu)
        try:
            with _quiet_stderr():
                _silence_logs(llama_cpp)
                self.llm = llama_cpp.Llama(
                    model_path=str(options.path), n_ctx=options.n_ctx, n_threads=options.threads,
                    n_threads_batch=options.threads, n_gpu_layers=gpu, flash_attn=self.flash_attn,
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
        self._ctx = self.llm._ctx.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._n_batch = llama_cpp.llama_n_batch(self._ctx)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._evaluated: list[int] = []  # token ids in the KV cache, in order
        self._last_prompt: tuple[list[int], int] = ([], 0)  # and where its evaluation began

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
        # llama.cpp's C API directly rather than Llama.generate, which copies the
        # vocabulary's logits into numpy after every token: 3-5% of decode time here.
        lib, prompt = self._lib, list(prompt)
        keep = _common_prefix(self._evaluated, prompt, len(prompt) - 1)  # re-evaluate >= 1 token
        if prompt == self._last_prompt[0]:
            # The same prompt again (/retry): evaluate the same batch as last time, since
            # batch and single-token kernels round differently and a seeded reply must
            # not change because its prompt is cached.
            keep = min(keep, self._last_prompt[1])
        if keep < len(self._evaluated):
            if lib.llama_memory_seq_rm(self._memory, -1, keep, -1):
                del self._evaluated[keep:]
            else:  # some caches (recurrent, sliding-window) cannot drop a tail: start over
                self.reset()
                keep = 0
        self._last_prompt = (prompt, keep)
        chain = self._sampler_chain(sampling, prompt[-LAST_N_TOKENS:])
        try:
            self._decode(prompt[keep:])
            while True:
                token = lib.llama_sampler_sample(chain, self._ctx, -1)
                yield token
                self._decode([token])
        finally:
            lib.llama_sampler_free(chain)

    def _decode(self, tokens: list[int]) -> None:
        lib = self._lib
        for i in range(0, len(tokens), self._n_batch):
            chunk = tokens[i:i + self._n_batch]
            ids = (lib.llama_token * len(chunk))(*chunk)
            status = lib.llama_decode(self._ctx, lib.llama_batch_get_one(ids, len(chunk)))
            if status != 0:
                self.reset()
                raise EngineError(f"llama.cpp could not evaluate the prompt (llama_decode returned {status})")
            self._evaluated += chunk

    def _sampler_chain(self, sampling: Sampling, history: list[int]) -> Any:
        """top-k before the repeat penalty: the penalty looks up every candidate it is
        given, and 49k lookups a token cost more than the rest of sampling (llama.h
        advises the same). Greedy keeps the top 40 for the penalty to reorder."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lambda sampler: lib.llama_sampler_chain_add(chain, sampler)  # noqa: E731
        greedy = sampling.temperature <= 0 or sampling.top_k == 1
        top_k = max(sampling.top_k, 0)
        if top_k or greedy:
            add(lib.llama_sampler_init_top_k(top_k or 40))
        if sampling.repeat_penalty != 1.0:
            add(lib.llama_sampler_init_penalties(self._n_vocab, LAST_N_TOKENS, sampling.repeat_penalty, 0.0, 0.0))
        if greedy:
            add(lib.llama_sampler_init_greedy())
        else:
            if sampling.top_p < 1.0:
                add(lib.llama_sampler_init_top_p(sampling.top_p, 1))
            add(lib.llama_sampler_init_temp(sampling.temperature))
            seed = sampling.seed if sampling.seed is not None else random.randrange(1 << 31)
            add(lib.llama_sampler_init_dist(seed))
        for token in history:  # the penalty counts recent prompt tokens too, as llama.cpp's CLI does
            lib.llama_sampler_accept(chain, token)
        return chain

    def reset(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)
        self._evaluated = []
        self._last_prompt = ([], 0)
        self.llm.reset()  # Llama's own record of the cache, for anyone using its API

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()


LAST_N_TOKENS = 64  # repeat-penalty window, llama.cpp's default


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a, b[:limit]):
        if x != y:
            break
        n += 1
    return n


def flash_attention(gpu_layers: int) -> bool:
    """On for CUDA; off on the CPU, where llama.cpp's flash-attention kernel walks the
    KV cache one query row at a time: it decodes 7% faster at an empty context but
    evaluates a chat turn's prompt at 1,000+ tokens of history half as fast (llama-bench,
    default model, 2 threads: pp32 @ d1024 99 vs 185 tok/s; docs/performance.md)."""
    return gpu_layers != 0


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text



_LOG_CALLBACK: Any = None  # ctypes callback: must stay alive as long as llama.cpp may call it


def _silence_logs(llama_cpp: Any) -> None:
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, None)
