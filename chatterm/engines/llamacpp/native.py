"""llama.cpp's C API set up for chatterm: the bindings, a model and a context loaded
with the parameters chatterm chooses, the sampler chain, the log, the cache's tail.
Shared by the engine and the draft model; docs/engines.md says why each choice."""

from __future__ import annotations

import os
import random
from typing import Any

from chatterm import safe_files
from chatterm.engines.base import Decoding, LoadOptions
from chatterm.engines.libraries import import_bare
from chatterm.errors import EngineError
from chatterm.models import gguf

LAST_N_TOKENS = 64  # repeat-penalty window, llama.cpp's default
N_BATCH = 512  # prompt tokens per llama_decode call (llama.cpp's default batch)

BATCH_MAX = 64  # tokens in a verification batch: the newest token and its drafts
GGML_TYPE_Q8_0 = 8


def bindings() -> Any:
    lib = import_bare("llama_cpp", "llama_cpp")
    if lib is None:
        raise EngineError("llama-cpp-python is not installed; pip install llama-cpp-python")
    return lib


def sampler_chain(lib: Any, n_vocab: int, sampling: Decoding, history: list[int], grammar: Any = None,
                  final: bool = True) -> Any:
    """top-k before the repeat penalty: the penalty looks up every candidate it is
    given, and 49k lookups a token cost more than the rest of sampling (llama.h
    advises the same). Greedy keeps the top 40 for the penalty to reorder. Not `final`:
    the transforms alone, no choice (the distributions of speculative sampling)."""
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    add = lambda sampler: lib.llama_sampler_chain_add(chain, sampler)  # noqa: E731
    if grammar is not None:  # first: it must see every candidate, or a call may have none left
        add(grammar)
    greedy = sampling.temperature <= 0 or sampling.top_k == 1
    top_k = max(sampling.top_k, 0)
    if top_k or greedy:
        add(lib.llama_sampler_init_top_k(top_k or 40))
    penalties = None
    if sampling.repeat_penalty != 1.0:
        penalties = lib.llama_sampler_init_penalties(n_vocab, LAST_N_TOKENS, sampling.repeat_penalty, 0.0, 0.0)
        add(penalties)
    if greedy:
        if final:
            add(lib.llama_sampler_init_greedy())
    else:
        if sampling.top_p < 1.0:
            add(lib.llama_sampler_init_top_p(sampling.top_p, 1))
        add(lib.llama_sampler_init_temp(sampling.temperature))
        if final:
            add(lib.llama_sampler_init_dist(seed_of(sampling)))
    if penalties is not None:
        # The penalty counts recent prompt tokens too, as llama.cpp's CLI does (the
        # penalty alone: a call earlier in the prompt must not trigger the grammar).
        for token in history:
            lib.llama_sampler_accept(penalties, token)
    return chain


def seed_of(sampling: Decoding) -> int:
    return sampling.seed if sampling.seed is not None else random.randrange(1 << 31)


def drop_tail(lib: Any, memory: Any, evaluated: list[int], keep: int) -> bool:
    """Drop what a cache holds after its first `keep` tokens (`evaluated`: its tokens);
    False when that cache cannot drop a tail (the caller starts it over)."""
    if keep < len(evaluated):
        if not lib.llama_memory_seq_rm(memory, -1, keep, -1):
            return False
        del evaluated[keep:]
    return True


def common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a, b[:limit]):
        if x != y:
            break
        n += 1
    return n


def file_digest(path: str) -> str:
    """SHA-256 of a saved state file: checked before llama.cpp reads a byte of it."""
    return safe_files.sha256(path, "state file")


def flash_attention(gpu_layers: int, exact_batches: bool = False) -> bool:
    """On for CUDA. On the CPU only in reproducible mode, for models whose weights are
    multiplied alike in a batch and one token at a time (`speculation.EXACT_TYPES`), with
    a Q8_0 cache (`new_context`): then a draft verified in a batch gets the very logits
    plain decoding would. Otherwise off: on the CPU it walks the cache slower (a turn's
    prompt deep in a chat -53%, docs/performance.md)."""
    return gpu_layers != 0 or exact_batches


def tensors(options: LoadOptions) -> list:
    """The model file's tensors (their types decide `inexact_reason`)."""
    return list((options.parsed or gguf.read(options.path)).tensors)


def load_model(lib: Any, path: str, gpu: int, repack: bool) -> Any:
    params = lib.llama_model_default_params()
    params.n_gpu_layers = 0x7FFFFFFF if gpu == -1 else gpu  # INT32_MAX: every layer
    params.use_extra_bufts = repack
    model = lib.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise EngineError(f"llama.cpp could not load {path} (not a model it can run, or not enough memory)")
    return model


def new_context(lib: Any, model: Any, n_ctx: int, threads: int, flash_attn: bool, exact: bool = False) -> Any:
    """A context; `exact`: the cache in Q8_0, with which llama.cpp's CPU flash attention
    takes one kernel for a single query and for a batch (with an F16 cache it splits a
    single query's keys across threads past 512 of them, and tiles batches of queries,
    each rounding its own way; docs/performance.md has the figures)."""
    cparams = lib.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = cparams.n_ubatch = min(n_ctx, N_BATCH)
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.flash_attn_type = (lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                               else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    cparams.no_perf = True
    if exact:
        cparams.type_k = cparams.type_v = GGML_TYPE_Q8_0
    return lib.llama_init_from_model(model, cparams)


_BACKEND: dict[str, Any] = {}  # once per process; the log callback must outlive every call
_LOG_DEBUG, _LOG_CONT = 1, 5  # ggml_log_level: DEBUG, and CONT (continues the last line's level)


def init_backend(lib: Any, native_logs: bool) -> None:
    """llama.cpp's log: to stderr in the worker (`native_logs`: its stderr is the engine
    log) minus the ~2,000 debug lines of every load; nowhere in any other process,
    where stderr is the terminal."""
    if _BACKEND:
        return
    lib.llama_backend_init()
    last = [0]

    def log(level: int, text: bytes, user_data: Any) -> None:
        if level != _LOG_CONT:
            last[0] = level
        if native_logs and last[0] != _LOG_DEBUG:
            os.write(2, text)

    _BACKEND["log"] = lib.llama_log_callback(log)
    lib.llama_log_set(_BACKEND["log"], None)
