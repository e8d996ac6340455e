"""llama.cpp through llama-cpp-python's ctypes bindings: every architecture current
llama.cpp supports.

chatterm drives llama.cpp's C API directly rather than the `Llama` class: `Llama`
copies the vocabulary's logits into numpy after every token (3-5% of decode time here),
imports numpy and jinja2 at start-up, and cannot load a model without weight repacking,
which CPUs with AMX need (`hardware.repack_off_reason`).
"""

from __future__ import annotations

import ctypes
import json
import os
import random
from typing import Any, Callable, Iterator, Sequence

from chatterm.models import hardware
from chatterm.engines.call_grammar import MarkerWatch
from chatterm.engines.base import SAFE_SETTINGS, Engine, LoadOptions, Sampling, context_size, never
from chatterm.engines.libraries import import_bare
from chatterm.errors import EngineError

LAST_N_TOKENS = 64  # repeat-penalty window, llama.cpp's default
N_BATCH = 512  # prompt tokens per llama_decode call (llama.cpp's default batch)


def bindings() -> Any:
    lib = import_bare("llama_cpp", "llama_cpp")
    if lib is None:
        raise EngineError("llama-cpp-python is not installed; pip install llama-cpp-python")
    return lib


class LlamaCppEngine(Engine):
    name = "llama.cpp"

    def __init__(self, options: LoadOptions):
        self._lib = lib = bindings()
        self._model = self._ctx = None
        _init_backend(lib, options.native_logs)
        self.notes = []
        gpu, note = hardware.llamacpp_gpu_layers(0 if options.safe else options.gpu_layers,
                                                 lib.llama_supports_gpu_offload(), options.fitted_layers)
        self.notes += [note] if note else []
        repack_off = SAFE_SETTINGS if options.safe else hardware.repack_off_reason()
        self.notes += [repack_off] if repack_off else []
        self.flash_attn = flash_attention(gpu)

        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if gpu == -1 else gpu  # INT32_MAX: every layer
        params.use_extra_bufts = repack_off is None
        self._model = lib.llama_model_load_from_file(str(options.path).encode(), params)
        if not self._model:
            raise EngineError(f"llama.cpp could not load {options.path} (not a model it can run, "
                              "or not enough memory)")
        trained = lib.llama_model_n_ctx_train(self._model)
        n_ctx = context_size(options.n_ctx, trained if trained > 0 else None)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = min(n_ctx, N_BATCH)
        cparams.n_threads = cparams.n_threads_batch = options.threads
        cparams.flash_attn_type = (lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn
                                   else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cparams.no_perf = True
        self._ctx = lib.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            self.close()
            raise EngineError(f"llama.cpp could not create a {n_ctx}-token context for {options.path} "
                              "(not enough memory? try a smaller --ctx)")
        self._vocab = lib.llama_model_get_vocab(self._model)
        self._pieces: dict[int, bytes] = {}
        self._special_pieces: dict[int, bytes] = {}  # control tokens as their text
        self._grammars: dict[tuple[str, bool | None], bytes] = {}  # GBNF by tools or schema (a chat asks the same)
        self._piece_buf = ctypes.create_string_buffer(64)
        self._memory = lib.llama_get_memory(self._ctx)
        self._n_batch = lib.llama_n_batch(self._ctx)
        self._n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        # llama.cpp pads the context to a multiple of 256: --ctx 64 allocates 256. The
        # window chatterm fills is the one asked for (the padding stays unused).
        self.n_ctx = min(n_ctx, lib.llama_n_ctx(self._ctx))
        n_layers = lib.llama_model_n_layer(self._model)
        self.device = f"CUDA ({min(gpu, n_layers) if gpu >= 0 else n_layers}/{n_layers} layers)" if gpu else "CPU"
        template = lib.llama_model_chat_template(self._model, None)
        self.chat_template = template.decode("utf-8", "replace") if template else None
        bos, eos = lib.llama_vocab_bos(self._vocab), lib.llama_vocab_eos(self._vocab)
        self.bos_id = bos if bos >= 0 else None
        self.bos_text = self._special_text(self.bos_id)
        self.eos_text = self._special_text(eos if eos >= 0 else None)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self._vocab))
        self._evaluated: list[int] = []  # token ids in the KV cache, in order
        self._last_prompt: tuple[list[int], int] = ([], 0)  # and where its evaluation began
        self._cancelled: Callable[[], bool] = never
        # Called by llama.cpp between graph nodes while a prompt is evaluated; kept
        # alive here for as long as llama.cpp may call it.
        self._abort = lib.ggml_abort_callback(lambda _: self._cancelled())

    def _special_text(self, token: int | None) -> str:
        return "" if token is None else self.piece(token, special=True).decode("utf-8", "replace")

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        lib, data = self._lib, text.encode("utf-8", "surrogatepass")
        room = len(data) + 2
        while True:
            ids = (lib.llama_token * room)()
            n = lib.llama_tokenize(self._vocab, data, len(data), ids, room, False, special)
            if n >= 0:
                return ids[:n]
            room = -n

    def piece(self, token: int, *, special: bool = False) -> bytes:
        # Asked once a token each way (tools on, a token's special piece is asked twice:
        # for the stream and for the call-marker watch).
        table = self._special_pieces if special else self._pieces
        cached = table.get(token)
        if cached is None:
            buf = self._piece_buf
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
            cached = table[token] = buf.raw[:n]
        return cached

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def sample(self, prompt: Sequence[int], sampling: Sampling,
               cancelled: Callable[[], bool] = never) -> Iterator[int]:
        lib, prompt = self._lib, list(prompt)
        keep = _common_prefix(self._evaluated, prompt, len(prompt) - 1)  # re-evaluate >= 1 token
        if prompt == self._last_prompt[0]:
            # The same prompt again (/retry): evaluate the same batch as last time, since
            # batch and single-token kernels round differently and a seeded reply must
            # not change because its prompt is cached.
            keep = min(keep, self._last_prompt[1])
        self._forget_after(keep)
        self._last_prompt = (prompt, len(self._evaluated))
        history = prompt[-LAST_N_TOKENS:]
        required = bool(sampling.call_schemas) and sampling.call_required
        if sampling.json_schema is not None:  # structured output: JSON of the schema from the first token
            grammar, watch = self._schema_grammar(sampling.json_schema), None
        else:
            grammar = self._call_grammar(sampling.call_schemas, False) if required else None
            watch = MarkerWatch() if sampling.call_schemas and not required else None
        chain = self._sampler_chain(sampling, history, grammar)
        try:
            if not self._decode(prompt[len(self._evaluated):], cancelled):
                return
            while True:
                token = lib.llama_sampler_sample(chain, self._ctx, -1)
                yield token
                if watch is not None:
                    rest = watch.feed(self.piece(token, special=True))
                    if rest is not None:  # the model began a call: from here it keeps to a schema
                        watch = None
                        if not rest.strip():
                            lib.llama_sampler_free(chain)
                            history = (history + self._evaluated[len(prompt):] + [token])[-LAST_N_TOKENS:]
                            chain = self._sampler_chain(sampling, history,
                                                        self._call_grammar(sampling.call_schemas, True))
                self._decode([token])
        finally:
            lib.llama_sampler_free(chain)

    def _forget_after(self, keep: int) -> None:
        if keep < len(self._evaluated):
            if self._lib.llama_memory_seq_rm(self._memory, -1, keep, -1):
                del self._evaluated[keep:]
            else:  # some caches (recurrent, sliding-window) cannot drop a tail: start over
                self.reset()

    def _decode(self, tokens: list[int], cancelled: Callable[[], bool] = never) -> bool:
        """Evaluate `tokens`; False if `cancelled` stopped a prompt evaluation. The abort
        callback is set for prompts only: llama.cpp calls it between every two graph
        nodes, which a single-token step would pay for on every token."""
        lib = self._lib
        watch = len(tokens) > 1 and cancelled is not never
        if watch:
            self._cancelled = cancelled
            lib.llama_set_abort_callback(self._ctx, self._abort, None)
        try:
            for i in range(0, len(tokens), self._n_batch):
                if watch and cancelled():
                    return False
                chunk = tokens[i:i + self._n_batch]
                ids = (lib.llama_token * len(chunk))(*chunk)
                status = lib.llama_decode(self._ctx, lib.llama_batch_get_one(ids, len(chunk)))
                if status == 2:  # aborted: llama.cpp dropped the unfinished batch's positions
                    self._forget_after(len(self._evaluated))
                    return False
                if status != 0:
                    self.reset()
                    raise EngineError(f"llama.cpp could not evaluate the prompt (llama_decode returned {status})")
                self._evaluated += chunk
            return True
        finally:
            if watch:
                lib.llama_set_abort_callback(self._ctx, ctypes.cast(None, lib.ggml_abort_callback), None)
                self._cancelled = never

    def _sampler_chain(self, sampling: Sampling, history: list[int], grammar: Any = None) -> Any:
        """top-k before the repeat penalty: the penalty looks up every candidate it is
        given, and 49k lookups a token cost more than the rest of sampling (llama.h
        advises the same). Greedy keeps the top 40 for the penalty to reorder."""
        lib = self._lib
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
            penalties = lib.llama_sampler_init_penalties(self._n_vocab, LAST_N_TOKENS, sampling.repeat_penalty, 0.0, 0.0)
            add(penalties)
        if greedy:
            add(lib.llama_sampler_init_greedy())
        else:
            if sampling.top_p < 1.0:
                add(lib.llama_sampler_init_top_p(sampling.top_p, 1))
            add(lib.llama_sampler_init_temp(sampling.temperature))
            seed = sampling.seed if sampling.seed is not None else random.randrange(1 << 31)
            add(lib.llama_sampler_init_dist(seed))
        if penalties is not None:
            # The penalty counts recent prompt tokens too, as llama.cpp's CLI does (the
            # penalty alone: a call earlier in the prompt must not trigger the grammar).
            for token in history:
                lib.llama_sampler_accept(penalties, token)
        return chain

    def _schema_grammar(self, schema: dict) -> Any:
        """The grammar sampler for a reply that is JSON matching `schema`."""
        from chatterm.engines.call_grammar import schema_gbnf

        return self._grammar((json.dumps(schema, sort_keys=True), None), lambda: schema_gbnf(schema), "the schema's")

    def _call_grammar(self, schemas: list, after_marker: bool) -> Any:
        """The grammar sampler for a call to one of `schemas` (`call_grammar`): the
        whole reply, or (`after_marker`) what follows the `<tool_call>` the model wrote."""
        from chatterm.engines.call_grammar import hermes_gbnf

        return self._grammar((json.dumps(schemas, sort_keys=True), after_marker),
                             lambda: hermes_gbnf(schemas, after_marker), "the tools' call")

    def _grammar(self, key: tuple[str, bool | None], build: Callable[[], str], what: str) -> Any:
        """A grammar sampler for the GBNF `build` makes, made once per `key` (a chat
        asks for the same schema or tools turn after turn)."""
        gbnf = self._grammars.get(key)
        if gbnf is None:
            gbnf = self._grammars[key] = build().encode()
        sampler = self._lib.llama_sampler_init_grammar(self._vocab, gbnf, b"root")
        if not sampler:
            raise EngineError(f"llama.cpp could not parse {what} grammar")
        return sampler

    def reset(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)
        self._evaluated = []
        self._last_prompt = ([], 0)

    def close(self) -> None:
        if self._ctx:
            self._lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            self._lib.llama_model_free(self._model)
            self._model = None


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


_BACKEND: dict[str, Any] = {}  # once per process; the log callback must outlive every call
_LOG_DEBUG, _LOG_CONT = 1, 5  # ggml_log_level: DEBUG, and CONT (continues the last line's level)


def _init_backend(lib: Any, native_logs: bool) -> None:
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
