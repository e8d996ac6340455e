"""The draft model of draft-model speculation, in the worker beside the target."""

from __future__ import annotations

import random
from typing import Any

from chatterm.engines.base import Decoding, LoadOptions
from chatterm.engines.llamacpp.native import (
    LAST_N_TOKENS,
    common_prefix,
    drop_tail,
    load_model,
    new_context,
    sampler_chain,
)
from chatterm.errors import EngineError
from chatterm.models import gguf


class DraftModel:
    """The small model of draft-model speculation, in the worker beside the target:
    it proposes the next few tokens greedily. Its cache follows the target's reply:
    `agree` tokens of it are known to equal the target's, so catching up after a
    verification evaluates one or two tokens, never the reply again."""

    def __init__(self, lib: Any, options: LoadOptions, n_ctx: int, flash_attn: bool, repack: bool, n_vocab: int):
        self._lib = lib
        self._ctx: Any = None
        self._reply: tuple | None = None  # the reply's (sampler chain, rng: None when greedy)
        self._model = load_model(lib, str(options.draft), options.draft_gpu_layers, repack)
        self._own_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self._model))
        if abs(self._own_vocab - n_vocab) > gguf.VOCAB_SLACK:  # the loader compared the tokens themselves
            self.close()
            raise EngineError(f"the draft model {options.draft} has another vocabulary than the model "
                              f"({self._own_vocab} tokens, not {n_vocab})")
        self._n_vocab = n_vocab  # a draft token past the model's vocabulary ends a proposal
        self._ctx = new_context(lib, self._model, n_ctx, options.threads, flash_attn)
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

    def begin(self, prompt: list[int], sampling: Decoding, rng: random.Random | None = None) -> None:
        """A new reply to `prompt` with `sampling`: keep what the cache shares with it.
        The draft chooses with the reply's own transforms (its repeat penalty too), so
        it guesses what the model will choose; `rng`: a sampled reply, whose drafts are
        sampled from the draft's distribution (kept in `distributions` for verifying)."""
        from chatterm.engines.speculative_sampling import Distributions

        lib = self._lib
        self.agree = common_prefix(self._evaluated, prompt, len(prompt))
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
        assert self._reply is not None, "propose() comes after begin()"
        chain, rng = self._reply
        lib.llama_sampler_reset(chain)  # the penalty's window: the reply's last tokens, not earlier drafts
        for t in target[-(LAST_N_TOKENS - 1):] + [token]:
            lib.llama_sampler_accept(chain, t)
        out: list[int] = []
        self.distributions = []
        for i in range(k):
            if rng is not None:
                ids, p = self._dists.at(self._ctx, -1, chain)
                token = draw(ids, p, rng)
                lib.llama_sampler_accept(chain, token)
                self.distributions.append((ids, p))
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
        if not drop_tail(self._lib, self._memory, self._evaluated, keep):
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
