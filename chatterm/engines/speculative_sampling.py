"""Speculative sampling for a draft model's proposals (Leviathan et al. 2023; Chen et al.
2023): keep drafted token x with probability min(1, p(x)/q(x)), p the model's and q the
draft's distribution after the same sampler transforms; at the first rejection, sample
from the residual max(0, p - q), renormalized. The reply is then distributed exactly as
the model alone would sample it.

The distributions are those llama.cpp's own samplers leave (top-k, repeat penalty,
top-p, temperature, applied by `llama_sampler_apply` to the context's logits), so a
sampled reply with a draft sees the very settings one without sees. numpy, which
llama-cpp-python depends on, holds the candidates; only sampled replies with a draft
import it."""

from __future__ import annotations

import ctypes
import random
from collections.abc import Callable
from typing import Any


class Distributions:
    """One model's next-token distributions at a context's logit rows."""

    def __init__(self, lib: Any, n_vocab: int):
        import numpy as np

        self._np, self._lib, self._n = np, lib, n_vocab
        self._data = (lib.llama_token_data * n_vocab)()
        self._view = np.ctypeslib.as_array(self._data)  # a structured view: id, logit, p
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._array = lib.llama_token_data_array()

    def at(self, ctx: Any, row: int, transforms: Any) -> tuple[Any, Any]:
        """(token ids, probabilities) of the distribution at logit row `row` of `ctx`
        after `transforms` (a sampler chain without its final choice)."""
        np, lib, n = self._np, self._lib, self._n
        view = self._view
        view["id"] = self._ids
        view["logit"] = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, row), shape=(n,))
        array = self._array
        array.data, array.size, array.selected, array.sorted = self._data, n, -1, False
        lib.llama_sampler_apply(transforms, ctypes.byref(array))
        kept = view[:array.size]
        logits = kept["logit"].astype(np.float64)
        p = np.exp(logits - logits.max())
        return kept["id"].copy(), p / p.sum()


def draw(ids: Any, p: Any, rng: random.Random) -> int:
    """One token of the distribution (`ids`, `p`)."""
    u, total = rng.random(), 0.0
    for token, mass in zip(ids.tolist(), p.tolist()):
        total += mass
        if u < total:
            return int(token)
    return int(ids[int(p.argmax())])


def verify(proposal: list[int], qs: list[tuple[Any, Any]], p_at: Callable[[int], tuple[Any, Any]],
           keep: Callable[[int], None], rng: random.Random) -> tuple[int, int]:
    """(tokens of `proposal` kept, the token after them), given the draft's
    distributions `qs` (one per proposed token) and the model's at each position
    (`p_at(i)`, asked in order, after `keep` has been told every token before it)."""
    for i, x in enumerate(proposal):
        p_ids, p = p_at(i)
        q_ids, q = qs[i]
        px, qx = _mass(p_ids, p, x), _mass(q_ids, q, x)
        if qx > 0 and rng.random() < min(1.0, px / qx):
            keep(x)
            continue
        token = draw(*_residual(p_ids, p, q_ids, q), rng)
        keep(token)
        return i, token
    token = draw(*p_at(len(proposal)), rng)
    keep(token)
    return len(proposal), token


def _mass(ids: Any, p: Any, token: int) -> float:
    hit = (ids == token).nonzero()[0]
    return float(p[hit[0]]) if len(hit) else 0.0


def _residual(p_ids: Any, p: Any, q_ids: Any, q: Any) -> tuple[Any, Any]:
    """max(0, p - q) over p's tokens, renormalized (p itself when nothing is left)."""
    import numpy as np

    q_by_id = np.zeros(int(max(p_ids.max(), q_ids.max())) + 1)
    q_by_id[q_ids] = q
    rest = np.maximum(p - q_by_id[p_ids], 0.0)
    total = rest.sum()
    return (p_ids, rest / total) if total > 0 else (p_ids, p)
