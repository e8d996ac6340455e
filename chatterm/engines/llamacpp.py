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

from chatterm.models import gguf, hardware
from chatterm.engines import speculation
from chatterm.engines.call_grammar import JsonCallWatch, MarkerWatch, call_names
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
        self._inexact = speculation.inexact_reason(_tensors(options), gpu != 0)
        self.reproducible = options.reproducible
        self.on_gpu = gpu != 0
        self.flash_attn = flash_attention(gpu, self.exact_batches)
        if self.reproducible:
            self.notes.append("reproducible mode: " + ("batch-invariant kernels (flash attention, Q8_0 cache)"
                                                       if self.exact_batches else f"no speculation ({self._inexact})"))
        self._draft: DraftModel | None = None
        self._batch: Any = None  # the verification batch, made once
        self._distributions: Any = None  # sampled replies with a draft: the model's distributions

        self._model = _load_model(lib, str(options.path), gpu, repack_off is None)
        trained = lib.llama_model_n_ctx_train(self._model)
        n_ctx = context_size(options.n_ctx, trained if trained > 0 else None)
        self._ctx = _new_context(lib, self._model, n_ctx, options.threads, self.flash_attn, self.exact_batches)
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
        self._setup_speculation(options, n_ctx, repack_off is None)

    def _setup_speculation(self, options: LoadOptions, n_ctx: int, repack: bool) -> None:
        """What speculative decoding this model can do (`speculation_kinds`), and the
        draft model if one was asked for."""
        lib, self.tally = self._lib, speculation.Tally(options.speculate)
        self.speculate = options.speculate
        self._speculating = False
        self._payoff = {"ngram": speculation.Payoff(), "draft": speculation.Payoff()}
        if options.speculate == "off":
            return
        model = self._model
        if lib.llama_model_is_recurrent(model) or lib.llama_model_is_hybrid(model) or lib.llama_model_n_swa(model) > 0:
            # rejecting a draft drops the tail of the cache, which llama.cpp cannot do for these
            self.tally.off = "a recurrent or sliding-window model: its cache cannot drop rejected drafts"
            return
        if self.reproducible and self._inexact:
            self.tally.off = f"reproducible: {self._inexact}, so drafts could change greedy replies"
            return
        if options.speculate == "auto" and not self.on_gpu:
            # Measured on a 2-core CPU: prompt lookup at 0.74-0.76x of plain decoding even at 4.5
            # tokens a step, since a batch of k tokens costs about k single steps there.
            self.tally.off = "auto: on the CPU a verification batch costs what its tokens would (--speculate ngram to try)"
            return
        if self._inexact or not self.exact_batches:
            self.notes.append("speculation: a greedy reply may part from decoding without it where the two best "
                              "tokens are within rounding (--reproducible: never)")
        if options.draft and options.speculate in ("auto", "draft"):
            try:
                self._draft = DraftModel(lib, options, n_ctx, flash_attention(options.draft_gpu_layers), repack,
                                         self._n_vocab)
            except EngineError:
                self.close()
                raise
        self._speculating = True

    @property
    def speculation(self) -> dict[str, Any]:
        return self.tally.report()

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
        self.reused = len(self._evaluated)
        self._last_prompt = (prompt, len(self._evaluated))
        history = prompt[-LAST_N_TOKENS:]
        required = bool(sampling.call_schemas) and sampling.call_required
        if sampling.json_schema is not None:  # structured output: JSON of the schema from the first token
            grammar, watch = self._schema_grammar(sampling.json_schema), None
        else:
            grammar = self._call_grammar(sampling.call_schemas, False) if required else None
            watch = MarkerWatch() if sampling.call_schemas and not required else None
        json_watch = JsonCallWatch(call_names(sampling.call_schemas)) if watch is not None else None
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
                        call = (self._call_grammar(sampling.call_schemas, True) if rest is not None and not rest.strip()
                                else self._json_call_grammar(sampling.call_schemas, *head) if head else None)
                        if call is not None:
                            lib.llama_sampler_free(chain)
                            history = (history + self._evaluated[len(prompt):] + [token])[-LAST_N_TOKENS:]
                            chain = self._sampler_chain(sampling, history, call)
                self._decode([token])
        finally:
            lib.llama_sampler_free(chain)

    def _speculation_kinds(self, sampling: Sampling) -> tuple[str, ...]:
        """The kinds of drafting this reply may use, in the order they are tried."""
        if not self._speculating:
            return ()
        draft = ("draft",) if self._draft is not None else ()
        return draft if self.speculate == "draft" else ("ngram", *draft)

    def _speculative(self, chain: Any, prompt: list[int], kinds: tuple[str, ...], sampling: Sampling,
                     history: list[int]) -> Iterator[int]:
        """Decoding with drafts, for `sample`: the drafted tokens go to the model in
        one batch after the newest token, and the model's own choice at each position
        (sampled by the same chain) is kept for as long as it equals the draft; the
        model's choice at the first mismatch is the next token, and the rest of the
        batch leaves the cache.

        Prompt lookup's drafts are certain tokens, so "the model sampled the drafted
        token" happens with exactly its probability and, when it does not, the model's
        choice is a sample of the rest: greedy or sampled, the reply is distributed as
        without drafts. A draft model's proposals in a sampled reply are verified by
        speculative sampling instead (`speculative_sampling`), which needs the model's
        distributions: `transforms` (the chain without its final choice) gives them, and
        learns every kept token, as the chain does."""
        lib, ctx, tally, clock = self._lib, self._ctx, self.tally, speculation.clock
        auto = self.speculate == "auto"
        lookup = speculation.Lookup(prompt) if "ngram" in kinds else None
        draft = self._draft if "draft" in kinds else None
        greedy = sampling.temperature <= 0 or sampling.top_k == 1
        sampled = None  # (transforms, distributions, rng): a sampled reply with a draft model
        if draft is not None:
            if not greedy:
                from chatterm.engines import speculative_sampling

                rng = random.Random(seed_of(sampling))
                self._distributions = self._distributions or speculative_sampling.Distributions(lib, self._n_vocab)
                sampled = (sampler_chain(lib, self._n_vocab, sampling, history, final=False),
                           self._distributions, rng)
            draft.begin(prompt, sampling, sampled[2] if sampled else None)
        k_ngram = speculation.NGRAM_DRAFT
        payoff = self._payoff
        learn = (lambda t: lib.llama_sampler_accept(sampled[0], t)) if sampled else (lambda t: None)
        try:
            token = lib.llama_sampler_sample(chain, ctx, -1)
            learn(token)
            while True:
                yield token
                if lookup is not None:
                    lookup.add(token)
                started = clock()
                room = self.n_ctx - len(self._evaluated) - 1  # the drafts must fit the window
                kind, proposal = None, []
                if lookup is not None and (not auto or payoff["ngram"].active()):
                    kind, proposal = "ngram", lookup.draft(min(k_ngram, room))
                if not proposal and draft is not None and (not auto or payoff["draft"].active()) and room > 0:
                    kind, proposal = "draft", draft.propose(self._evaluated, token, min(speculation.MODEL_DRAFT, room))
                if not proposal:
                    self._decode([token])
                    token = lib.llama_sampler_sample(chain, ctx, -1)
                    learn(token)
                    for p in payoff.values():
                        p.plain(clock() - started)
                    continue
                base = len(self._evaluated)
                self._decode_batch([token, *proposal])
                if kind == "draft" and sampled:
                    n, token = self._verify_sampled(proposal, draft.distributions, chain, sampled)
                    kept = proposal[:n]
                else:
                    kept = []
                    for i in range(len(proposal) + 1):
                        token = lib.llama_sampler_sample(chain, ctx, i)
                        if i == len(proposal) or token != proposal[i]:
                            break
                        kept.append(token)
                    for t in (*kept, token):
                        learn(t)
                self._forget_after(base + 1 + len(kept))  # the drafts after the first the model did not choose
                if kind == "draft":
                    draft.accepted(len(kept))
                else:
                    k_ngram = max(speculation.NGRAM_DRAFT, min(2 * (len(kept) + 1), speculation.NGRAM_DRAFT_MAX))
                tally.step(kind, len(proposal), len(kept))
                payoff[kind].step(clock() - started, len(kept) + 1)
                for t in kept:
                    yield t
                    if lookup is not None:
                        lookup.add(t)
        finally:
            if sampled:
                lib.llama_sampler_free(sampled[0])
            if draft is not None:
                draft.end()

    def _verify_sampled(self, proposal: list[int], qs: list, chain: Any, sampled: tuple) -> tuple[int, int]:
        """Speculative sampling of a draft model's `proposal` (its distributions `qs`):
        (tokens kept, the next token), each learnt by the chain and the transforms
        before the model's distribution at the next position is asked for."""
        from chatterm.engines.speculative_sampling import verify

        lib, ctx = self._lib, self._ctx
        transforms, distributions, rng = sampled

        def keep(token: int) -> None:
            lib.llama_sampler_accept(chain, token)
            lib.llama_sampler_accept(transforms, token)

        return verify(proposal, qs, lambda i: distributions.at(ctx, i, transforms), keep, rng)

    def _decode_batch(self, tokens: list[int]) -> None:
        """Evaluate `tokens` in one batch with logits for every one of them (a draft's
        verification)."""
        lib, n = self._lib, len(tokens)
        if self._batch is None:
            self._batch = lib.llama_batch_init(BATCH_MAX, 0, 1)
        batch, start = self._batch, len(self._evaluated)
        for i, t in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, start + i, 1, 1
            batch.seq_id[i][0] = 0
        batch.n_tokens = n
        status = lib.llama_decode(self._ctx, batch)
        if status != 0:
            self.reset()
            raise EngineError(f"llama.cpp could not evaluate the drafted tokens (llama_decode returned {status})")
        self._evaluated += tokens

    def _forget_after(self, keep: int) -> None:
        if not _drop_tail(self._lib, self._memory, self._evaluated, keep):
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
                lib.llama_set_abort_callback(self._ctx, ctypes.cast(None, lib.ggml_abort_callback), None)
                self._cancelled = never

    def _sampler_chain(self, sampling: Sampling, history: list[int], grammar: Any = None) -> Any:
        return sampler_chain(self._lib, self._n_vocab, sampling, history, grammar)

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

    def _json_call_grammar(self, schemas: list, name: str, fenced: bool, written: bytes) -> Any:
        """The grammar sampler for the rest of a call to `name` written as JSON, whose
        head the model wrote (`call_grammar.JsonCallWatch`); None when what it wrote
        after the name leads elsewhere."""
        from chatterm.engines.call_grammar import json_call_gbnf

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
        except OSError:
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


def sampler_chain(lib: Any, n_vocab: int, sampling: Sampling, history: list[int], grammar: Any = None,
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


def seed_of(sampling: Sampling) -> int:
    return sampling.seed if sampling.seed is not None else random.randrange(1 << 31)


def _drop_tail(lib: Any, memory: Any, evaluated: list[int], keep: int) -> bool:
    """Drop what a cache holds after its first `keep` tokens (`evaluated`: its tokens);
    False when that cache cannot drop a tail (the caller starts it over)."""
    if keep < len(evaluated):
        if not lib.llama_memory_seq_rm(memory, -1, keep, -1):
            return False
        del evaluated[keep:]
    return True


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a, b[:limit]):
        if x != y:
            break
        n += 1
    return n


def file_digest(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def flash_attention(gpu_layers: int, exact_batches: bool = False) -> bool:
    """On for CUDA. On the CPU only in reproducible mode, for models whose weights are
    multiplied alike in a batch and one token at a time (`speculation.EXACT_TYPES`), with
    a Q8_0 cache (`_new_context`): then a draft verified in a batch gets the very logits
    plain decoding would. Otherwise off: on the CPU it walks the cache slower (a turn's
    prompt deep in a chat -53%, docs/performance.md)."""
    return gpu_layers != 0 or exact_batches


BATCH_MAX = 64  # tokens in a verification batch: the newest token and its drafts
GGML_TYPE_Q8_0 = 8


def _tensors(options: LoadOptions) -> list:
    """The model file's tensors (their types decide `inexact_reason`)."""
    return list((options.parsed or gguf.read(options.path)).tensors)


def _load_model(lib: Any, path: str, gpu: int, repack: bool) -> Any:
    params = lib.llama_model_default_params()
    params.n_gpu_layers = 0x7FFFFFFF if gpu == -1 else gpu  # INT32_MAX: every layer
    params.use_extra_bufts = repack
    model = lib.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise EngineError(f"llama.cpp could not load {path} (not a model it can run, or not enough memory)")
    return model


def _new_context(lib: Any, model: Any, n_ctx: int, threads: int, flash_attn: bool, exact: bool = False) -> Any:
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


class DraftModel:
    """The small model of draft-model speculation, in the worker beside the target:
    it proposes the next few tokens greedily. Its cache follows the target's reply:
    `agree` tokens of it are known to equal the target's, so catching up after a
    verification evaluates one or two tokens, never the reply again."""

    def __init__(self, lib: Any, options: LoadOptions, n_ctx: int, flash_attn: bool, repack: bool, n_vocab: int):
        self._lib = lib
        self._ctx: Any = None
        self._reply: tuple | None = None  # the reply's (sampler chain, rng: None when greedy)
        self._model = _load_model(lib, str(options.draft), options.draft_gpu_layers, repack)
        self._own_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self._model))
        if abs(self._own_vocab - n_vocab) > gguf.VOCAB_SLACK:  # the loader compared the tokens themselves
            self.close()
            raise EngineError(f"the draft model {options.draft} has another vocabulary than the model "
                              f"({self._own_vocab} tokens, not {n_vocab})")
        self._n_vocab = n_vocab  # a draft token past the model's vocabulary ends a proposal
        self._ctx = _new_context(lib, self._model, n_ctx, options.threads, flash_attn)
        if not self._ctx:
            self.close()
            raise EngineError(f"llama.cpp could not create a {n_ctx}-token context for the draft model")
        self._memory = lib.llama_get_memory(self._ctx)
        self._n_batch = lib.llama_n_batch(self._ctx)
        self._evaluated: list[int] = []
        self.agree = 0  # leading tokens of `_evaluated` equal to the target's
        self._base = 0
        self._dists: Any = None
        self.distributions: list = []  # of the last proposal, when sampled

    def begin(self, prompt: list[int], sampling: Sampling, rng: random.Random | None = None) -> None:
        """A new reply to `prompt` with `sampling`: keep what the cache shares with it.
        The draft chooses with the reply's own transforms (its repeat penalty too), so
        it guesses what the model will choose; `rng`: a sampled reply, whose drafts are
        sampled from the draft's distribution (kept in `distributions` for verifying)."""
        from chatterm.engines.speculative_sampling import Distributions

        lib = self._lib
        self.agree = _common_prefix(self._evaluated, prompt, len(prompt))
        if rng is not None:
            self._dists = self._dists or Distributions(lib, self._own_vocab)
        self.end()
        self._reply = (sampler_chain(lib, self._own_vocab, sampling, [], final=rng is None), rng)

    def end(self) -> None:
        if self._reply:
            self._lib.llama_sampler_free(self._reply[0])
            self._reply = None

    def propose(self, target: list[int], token: int, k: int) -> list[int]:
        """`k` tokens to follow `target` (the target's evaluated tokens) and `token`:
        the draft's greedy choices, or its samples (their distributions then in
        `distributions`)."""
        from chatterm.engines.speculative_sampling import draw

        lib = self._lib
        self._forget_after(self.agree)
        self._decode(target[self.agree:] + [token])
        self._base = len(target)
        chain, rng = self._reply
        lib.llama_sampler_reset(chain)  # the penalty's window: the reply's last tokens, not earlier drafts
        for t in target[-(LAST_N_TOKENS - 1):] + [token]:
            lib.llama_sampler_accept(chain, t)
        out: list[int] = []
        self.distributions = []
        for i in range(k):
            if rng is not None:
                q = self._dists.at(self._ctx, -1, chain)
                token = draw(*q, rng)
                lib.llama_sampler_accept(chain, token)
                self.distributions.append(q)
            else:
                token = lib.llama_sampler_sample(chain, self._ctx, -1)
            if token >= self._n_vocab:
                break
            out.append(token)
            if i < k - 1:
                self._decode(out[-1:])
        del self.distributions[len(out):]
        self._k = max(len(out), 1)
        return out

    def accepted(self, n: int) -> None:
        """The target kept `n` of the proposal: those, and the token before them, agree."""
        self.agree = self._base + 1 + min(n, self._k - 1)

    def _forget_after(self, keep: int) -> None:
        if not _drop_tail(self._lib, self._memory, self._evaluated, keep):
            self._lib.llama_memory_clear(self._memory, True)
            self._evaluated, self.agree = [], 0

    def _decode(self, tokens: list[int]) -> None:
        lib = self._lib
        for i in range(0, len(tokens), self._n_batch):
            chunk = tokens[i:i + self._n_batch]
            ids = (lib.llama_token * len(chunk))(*chunk)
            if lib.llama_decode(self._ctx, lib.llama_batch_get_one(ids, len(chunk))) != 0:
                lib.llama_memory_clear(self._memory, True)
                self._evaluated, self.agree = [], 0
                raise EngineError("llama.cpp could not evaluate the draft model's tokens")
            self._evaluated += chunk

    def close(self) -> None:
        lib = self._lib
        self.end()
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None


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
