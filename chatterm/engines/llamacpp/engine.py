"""The llama.cpp engine: loading, tokens, sampling (with grammars for calls and
schemas), the KV cache and its state on disk."""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from chatterm.engines import speculation
from chatterm.engines.base import SAFE_SETTINGS, Decoding, Engine, LoadOptions, context_size, never
from chatterm.engines.call_grammar import (
    JsonCallWatch,
    MarkerWatch,
    call_names,
    hermes_gbnf,
    json_call_gbnf,
    schema_gbnf,
)
from chatterm.engines.llamacpp.draft import DraftModel
from chatterm.engines.llamacpp.native import (
    LAST_N_TOKENS,
    bindings,
    common_prefix,
    drop_tail,
    file_digest,
    flash_attention,
    init_backend,
    load_model,
    new_context,
    sampler_chain,
    tensors,
)
from chatterm.engines.llamacpp.speculative import Speculative
from chatterm.errors import ChattermError, EngineError
from chatterm.models import hardware


class LlamaCppEngine(Speculative, Engine):
    name = "llama.cpp"

    def __init__(self, options: LoadOptions):
        self._lib = lib = bindings()
        self._model = self._ctx = None
        init_backend(lib, options.native_logs)
        self.notes = []
        gpu, note = hardware.llamacpp_gpu_layers(0 if options.safe else options.gpu_layers,
                                                 lib.llama_supports_gpu_offload(), options.fitted_layers)
        self.notes += [note] if note else []
        repack_off = SAFE_SETTINGS if options.safe else hardware.repack_off_reason()
        self.notes += [repack_off] if repack_off else []
        self._inexact = speculation.inexact_reason(tensors(options), gpu != 0)
        self.reproducible = options.reproducible
        self.on_gpu = gpu != 0
        self.flash_attn = flash_attention(gpu, self.exact_batches)
        if self.reproducible:
            self.notes.append("reproducible mode: " + ("batch-invariant kernels (flash attention, Q8_0 cache)"
                                                       if self.exact_batches else f"no speculation ({self._inexact})"))
        self._draft: DraftModel | None = None
        self._batch: Any = None  # the verification batch, made once
        self._distributions: Any = None  # sampled replies with a draft: the model's distributions

        self._model = load_model(lib, str(options.path), gpu, repack_off is None)
        trained = lib.llama_model_n_ctx_train(self._model)
        n_ctx = context_size(options.n_ctx, trained if trained > 0 else None)
        self._ctx = new_context(lib, self._model, n_ctx, options.threads, self.flash_attn, self.exact_batches)
        if not self._ctx:
            self.close()
            raise EngineError(f"llama.cpp could not create a {n_ctx}-token context for {options.path} "
                              "(not enough memory? try a smaller --ctx)")
        self._vocab = lib.llama_model_get_vocab(self._model)
        self._pieces: dict[int, bytes] = {}
        self._special_pieces: dict[int, bytes] = {}  # control tokens as their text
        self._grammars: dict[tuple[str, Any], bytes] = {}  # GBNF by tools or schema (a chat asks the same)
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
        self.markup = self._markup()
        self._evaluated: list[int] = []  # token ids in the KV cache, in order
        self._last_prompt: tuple[list[int], int] = ([], 0)  # and where its evaluation began
        self._cancelled: Callable[[], bool] = never
        # Called by llama.cpp between graph nodes while a prompt is evaluated; kept
        # alive here for as long as llama.cpp may call it.
        self._abort = lib.ggml_abort_callback(lambda _: self._cancelled())
        self._adapters = self._load_adapters(options)
        self._scales = [scale for _, scale in options.adapters]
        self._apply_adapters()
        self._setup_speculation(options, n_ctx, repack_off is None)

    def _load_adapters(self, options: LoadOptions) -> list[Any]:
        """The LoRA adapters of `options`, loaded into the model (freed with it)."""
        loaded = []
        for path, _ in options.adapters:
            adapter = self._lib.llama_adapter_lora_init(self._model, path.encode())
            if not adapter:
                self.close()
                raise EngineError(f"llama.cpp could not load the LoRA adapter {path}")
            loaded.append(adapter)
        return loaded

    def _apply_adapters(self) -> None:
        """The adapters at their scales on the context; those at 0 are left out, so a set
        switched off computes exactly what the base model does."""
        if not self._adapters:
            return
        lib = self._lib
        on = [(a, s) for a, s in zip(self._adapters, self._scales) if s != 0]
        adapters = (lib.llama_adapter_lora_p_ctypes * max(len(on), 1))(*[a for a, _ in on])
        scales = (ctypes.c_float * max(len(on), 1))(*[s for _, s in on])
        if lib.llama_set_adapters_lora(self._ctx, adapters, len(on), scales) != 0:
            raise EngineError("llama.cpp could not apply the LoRA adapters")

    def set_adapters(self, scales: list[float]) -> bool:
        if len(scales) != len(self._adapters):
            raise EngineError(f"{len(scales)} scales for {len(self._adapters)} LoRA adapters")
        scales = [float(s) for s in scales]
        in_effect = [(i, s) for i, s in enumerate(self._scales) if s]
        self._scales = scales
        if [(i, s) for i, s in enumerate(scales) if s] == in_effect:
            return False
        self._apply_adapters()
        self.reset()  # every position was computed with the old set
        return True

    @property
    def exact_batches(self) -> bool:
        """A batch's logits are a single token's, to the bit (`speculation.inexact_reason`):
        only in reproducible mode, whose kernels are slower."""
        return self.reproducible and self._inexact is None

    def _markup(self) -> dict[str, list[str]]:
        """The texts of control and user-defined tokens (one pass over the vocabulary's
        attributes: 35 ms for Qwen2.5's 151,936)."""
        lib, vocab = self._lib, self._vocab
        control, user = lib.LLAMA_TOKEN_ATTR_CONTROL, lib.LLAMA_TOKEN_ATTR_USER_DEFINED
        found: dict[str, list[str]] = {"control": [], "user": []}
        for token in range(self._n_vocab):
            attr = lib.llama_vocab_get_attr(vocab, token)
            if attr & (control | user):
                text = self.piece(token, special=True).decode("utf-8", "replace")
                found["control" if attr & control else "user"].append(text)
        return found

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

    def sample(self, prompt: Sequence[int], sampling: Decoding,
               cancelled: Callable[[], bool] = never) -> Iterator[int]:
        lib, prompt = self._lib, list(prompt)
        keep = common_prefix(self._evaluated, prompt, len(prompt) - 1)  # re-evaluate >= 1 token
        if prompt == self._last_prompt[0]:
            # The same prompt again (/retry): evaluate the same batch as last time, since
            # batch and single-token kernels round differently and a seeded reply must
            # not change because its prompt is cached.
            keep = min(keep, self._last_prompt[1])
        self._forget_after(keep)
        self.reused = len(self._evaluated)
        self._last_prompt = (prompt, len(self._evaluated))
        history = prompt[-LAST_N_TOKENS:]
        schemas = sampling.call_schemas or []
        required = bool(schemas) and sampling.call_required
        if sampling.json_schema is not None:  # structured output: JSON of the schema from the first token
            grammar, watch = self._schema_grammar(sampling.json_schema), None
        else:
            grammar = self._call_grammar(schemas, False) if required else None
            watch = MarkerWatch() if schemas and not required else None
        json_watch = JsonCallWatch(call_names(schemas)) if watch is not None else None
        chain = self._sampler_chain(sampling, history, grammar)
        kinds = self._speculation_kinds(sampling) if grammar is None and watch is None and json_watch is None else ()
        try:
            if not self._decode(prompt[len(self._evaluated):], cancelled):
                return
            if kinds:
                yield from self._speculative(chain, prompt, kinds, sampling, history)
                return
            while True:
                token = lib.llama_sampler_sample(chain, self._ctx, -1)
                yield token
                if watch is not None:
                    piece = self.piece(token, special=True)
                    rest = watch.feed(piece)
                    head = json_watch.feed(piece) if json_watch is not None and rest is None else None
                    if rest is not None or head is not None:  # the model began a call: it keeps to a schema
                        watch = json_watch = None
                        call = (self._call_grammar(schemas, True) if rest is not None and not rest.strip()
                                else self._json_call_grammar(schemas, *head) if head else None)
                        if call is not None:
                            lib.llama_sampler_free(chain)
                            history = (history + self._evaluated[len(prompt):] + [token])[-LAST_N_TOKENS:]
                            chain = self._sampler_chain(sampling, history, call)
                self._decode([token])
        finally:
            lib.llama_sampler_free(chain)

    def _forget_after(self, keep: int) -> None:
        if not drop_tail(self._lib, self._memory, self._evaluated, keep):
            self.reset()  # some caches (recurrent, sliding-window) cannot drop a tail: start over

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
                lib.llama_set_abort_callback(self._ctx, ctypes.cast(None, lib.ggml_abort_callback), None)  # type: ignore[arg-type]
                self._cancelled = never

    def _sampler_chain(self, sampling: Decoding, history: list[int], grammar: Any = None) -> Any:
        return sampler_chain(self._lib, self._n_vocab, sampling, history, grammar)

    def _schema_grammar(self, schema: dict) -> Any:
        """The grammar sampler for a reply that is JSON matching `schema`."""
        return self._grammar((json.dumps(schema, sort_keys=True), None), lambda: schema_gbnf(schema), "the schema's")

    def _call_grammar(self, schemas: list, after_marker: bool) -> Any:
        """The grammar sampler for a call to one of `schemas` (`call_grammar`): the
        whole reply, or (`after_marker`) what follows the `<tool_call>` the model wrote."""
        return self._grammar((json.dumps(schemas, sort_keys=True), after_marker),
                             lambda: hermes_gbnf(schemas, after_marker), "the tools' call")

    def _json_call_grammar(self, schemas: list, name: str, fenced: bool, written: bytes) -> Any:
        """The grammar sampler for the rest of a call to `name` written as JSON, whose
        head the model wrote (`call_grammar.JsonCallWatch`); None when what it wrote
        after the name leads elsewhere."""
        tool = next(t for t in schemas if t.get("function", t).get("name") == name)
        key = (json.dumps(tool, sort_keys=True), (fenced, written))
        if key not in self._grammars:
            gbnf = json_call_gbnf(tool, fenced, written)
            if gbnf is None:
                return None
            self._grammars[key] = gbnf.encode()
        return self._grammar(key, str, "the tools' call")

    def _grammar(self, key: tuple[str, Any], build: Callable[[], str], what: str) -> Any:
        """A grammar sampler for the GBNF `build` makes, made once per `key` (a chat
        asks for the same schema or tools turn after turn)."""
        gbnf = self._grammars.get(key)
        if gbnf is None:
            gbnf = self._grammars[key] = build().encode()
        sampler = self._lib.llama_sampler_init_grammar(self._vocab, gbnf, b"root")
        if not sampler:
            raise EngineError(f"llama.cpp could not parse {what} grammar")
        return sampler

    def save_state(self, path: str, keep: int | None = None) -> dict[str, Any]:
        """llama.cpp's sequence state (the KV cache of `_evaluated`, with its token ids;
        its first `keep` alone when given) to `path`, through a temporary file renamed
        into place: a kill mid-write leaves no file that could be taken for a whole one."""
        if keep is not None and keep < len(self._evaluated):
            self._forget_after(keep)
        tokens = list(self._evaluated)
        if not tokens:
            return {"tokens": []}
        tmp = f"{path}.{os.getpid()}.tmp"
        ids = (self._lib.llama_token * len(tokens))(*tokens)
        try:
            written = self._lib.llama_state_seq_save_file(self._ctx, tmp.encode(), 0, ids, len(tokens))
            if not written:
                return {"tokens": []}
            digest = file_digest(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return {"tokens": tokens, "digest": digest}

    def load_state(self, path: str, digest: str, expected: list[int]) -> int:
        """A saved sequence state back in the cache, when the file is the one saved (its
        SHA-256, checked before llama.cpp reads a byte) and its tokens are a prefix of
        `expected` (checked after: never trusted)."""
        try:
            if file_digest(path) != digest:
                return 0
        except (OSError, ChattermError):
            return 0
        self.reset()
        capacity = self.n_ctx
        ids, count = (self._lib.llama_token * capacity)(), ctypes.c_size_t(0)
        read = self._lib.llama_state_seq_load_file(self._ctx, path.encode(), 0, ids, capacity, ctypes.byref(count))
        tokens = list(ids[:count.value]) if read else []
        if not tokens or tokens != list(expected[:len(tokens)]):
            self.reset()
            return 0
        self._evaluated = tokens
        return len(tokens)

    def reset(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)
        self._evaluated = []
        self._last_prompt = ([], 0)

    def close(self) -> None:
        if self._draft is not None:
            self._draft.close()
            self._draft = None
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            self._lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            self._lib.llama_model_free(self._model)
            self._model = None
