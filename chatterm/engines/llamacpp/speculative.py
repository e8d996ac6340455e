"""Speculative decoding on llama.cpp: drafted tokens (prompt lookup, or a draft model)
verified in one batch, the model's own choice kept where it agrees. The engine
(`engine.LlamaCppEngine`) mixes this in; `engines.speculation` holds the parts that
know nothing of llama.cpp (the lookup, the tally, the payoff)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from chatterm.engines import speculation
from chatterm.engines.base import Decoding, LoadOptions
from chatterm.engines.llamacpp.draft import DraftModel
from chatterm.engines.llamacpp.native import BATCH_MAX, flash_attention, sampler_chain, seed_of
from chatterm.errors import EngineError


class Speculative:
    """What the engine keeps for speculation, and the decoding loop that uses it."""

    _lib: Any
    _ctx: Any
    _model: Any
    _n_vocab: int
    _evaluated: list[int]
    n_ctx: int
    notes: list[str]
    on_gpu: bool
    reproducible: bool
    _inexact: str | None
    _draft: DraftModel | None
    _batch: Any
    _distributions: Any
    _decode: Callable[..., bool]

    @property
    def exact_batches(self) -> bool:
        raise NotImplementedError
    _forget_after: Callable[[int], None]
    close: Callable[[], None]
    reset: Callable[[], None]

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
            self.tally.off = ("auto: on the CPU a verification batch costs what its tokens would "
                              "(--speculate ngram to try)")
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

    def _speculation_kinds(self, sampling: Decoding) -> tuple[str, ...]:
        """The kinds of drafting this reply may use, in the order they are tried."""
        if not self._speculating:
            return ()
        draft = ("draft",) if self._draft is not None else ()
        return draft if self.speculate == "draft" else ("ngram", *draft)

    def _speculative(self, chain: Any, prompt: list[int], kinds: tuple[str, ...], sampling: Decoding,
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
                kind, proposal = "", []
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
                    assert draft is not None
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
                    assert draft is not None
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
