"""Speculative decoding's bookkeeping, apart from the engine that runs it: where drafts
come from without a second model (`Lookup`), when verifying drafts in a batch gives the
very numbers decoding one token at a time gives (`inexact_reason`), whether a kind of
drafting pays (`Payoff`), and what /stats says (`Tally`).

All of it costs the same at token 10 and at token 10,000 of a reply."""

from __future__ import annotations

import time
from typing import Any

clock = time.perf_counter  # times verification steps against plain ones (`Payoff`)

NGRAM = 3  # tokens matched by prompt lookup
NGRAM_DRAFT = 4  # tokens first proposed by prompt lookup; doubled while they are kept (copies run long)
NGRAM_DRAFT_MAX = 24
MODEL_DRAFT = 5  # tokens proposed by a draft model: each costs a step of the draft

# GGUF tensor types whose matrix products llama.cpp's CPU backend computes with the same
# arithmetic for one column and for a batch (measured: logits of a 9-token batch equal
# those of 9 single-token steps to the bit). F16/BF16/F32 matrices and the K-quants go
# through other kernels in a batch (llamafile's sgemm, repacked gemm) that round
# differently; then a verified draft can differ from plain decoding at a near-tie.
# F32 is fine for the 1-D tensors (norms), which are not multiplied as matrices.
EXACT_TYPES = {2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0"}
TYPE_NAMES = {0: "F32", 1: "F16", 30: "BF16", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
              20: "IQ4_NL"}


def inexact_reason(tensors: Any, on_gpu: bool) -> str | None:
    """Why batched verification of `tensors`' model may round unlike single-token
    decoding (then `auto` does not speculate), or None. `tensors`: a GGUF file's."""
    if on_gpu:
        return "on CUDA, batched and single-token kernels differ (not verified bit for bit)"
    for t in tensors:
        if len(t.shape) > 1 and t.type not in EXACT_TYPES:
            name = TYPE_NAMES.get(t.type, f"type {t.type}")
            return f"{name} weights ({t.name}) are multiplied by other kernels in a batch"
    return None


class Lookup:
    """Prompt-lookup drafts: the tokens that followed the latest earlier occurrence of
    the newest NGRAM tokens, in the prompt or the reply so far. Indexed as tokens
    arrive, so a lookup is one dictionary probe."""

    def __init__(self, tokens: list[int], n: int = NGRAM):
        self.n = n
        self.tokens: list[int] = []
        self._after: dict[tuple[int, ...], int] = {}  # n-gram -> the position after its latest occurrence
        for t in tokens:
            self.add(t)

    def add(self, token: int) -> None:
        tokens = self.tokens
        if len(tokens) >= self.n:
            self._after[tuple(tokens[-self.n:])] = len(tokens)
        tokens.append(token)

    def draft(self, k: int) -> list[int]:
        """Up to `k` tokens that followed the newest n-gram's previous occurrence."""
        if len(self.tokens) < self.n:
            return []
        at = self._after.get(tuple(self.tokens[-self.n:]))
        return self.tokens[at:at + k] if at is not None else []


class Payoff:
    """Whether a kind of drafting is worth its verification batches (`auto`): the
    tokens per second of its steps against those of plain steps. After PROBE steps that
    do not pay it rests, for REST plain tokens and then twice as long each time, so a
    reply that never repeats pays for a probe now and then, nothing more."""

    PROBE = 6
    REST = 256
    MEASURED = 4  # plain tokens timed before the first probe: the figure to beat

    def __init__(self) -> None:
        self.plain_s = 0.0  # time per plain token (a running mean)
        self._plain_seen = 0
        self._spec_time = 0.0
        self._spec_tokens = 0
        self._steps = 0
        self._resting = 0  # plain tokens left before the next probe
        self._rest = self.REST

    def active(self) -> bool:
        return self._resting <= 0 and self._plain_seen >= self.MEASURED

    def plain(self, seconds: float) -> None:
        self.plain_s = seconds if not self.plain_s else 0.9 * self.plain_s + 0.1 * seconds
        self._plain_seen += 1
        if self._resting > 0:
            self._resting -= 1

    def step(self, seconds: float, tokens: int) -> None:
        """A verification step that took `seconds` and gave `tokens` tokens."""
        self._spec_time += seconds
        self._spec_tokens += tokens
        self._steps += 1
        hopeless = self._spec_time > 2 * self.plain_s * self._spec_tokens  # half as fast: no need to wait
        if self._steps >= self.PROBE or hopeless:
            if self._spec_time / self._spec_tokens > self.plain_s:
                self._resting, self._rest = self._rest, self._rest * 2
            else:
                self._rest = self.REST
            self._spec_time, self._spec_tokens, self._steps = 0.0, 0, 0


class Tally:
    """Drafted and accepted tokens, and verification steps, for /stats."""

    def __init__(self, mode: str = "auto") -> None:
        self.mode = mode
        self.kinds: dict[str, list[int]] = {}  # kind -> [steps, drafted, accepted]
        self.off: str | None = None  # why speculation is off for this model, said once

    def step(self, kind: str, drafted: int, accepted: int) -> None:
        row = self.kinds.setdefault(kind, [0, 0, 0])
        row[0] += 1
        row[1] += drafted
        row[2] += accepted

    def report(self) -> dict[str, Any]:
        return {"mode": self.mode, "kinds": {k: list(v) for k, v in self.kinds.items()}, "off": self.off}


def describe(report: dict[str, Any] | None) -> list[str]:
    """/stats lines for an engine's `Tally.report()` (None: no speculation here)."""
    if not report:
        return []
    if report.get("off"):
        return [f"off: {report['off']}"]
    lines = [report.get("mode", "auto") + ("" if report.get("kinds") else ": no drafts verified yet")]
    for kind, (steps, drafted, accepted) in report.get("kinds", {}).items():
        if steps:
            what = "prompt lookup" if kind == "ngram" else "draft model"
            lines.append(f"  {what}: {accepted}/{drafted} drafted tokens accepted "
                         f"({100 * accepted / max(drafted, 1):.0f}%), "
                         f"{(accepted + steps) / steps:.2f} tokens per verification step")
    return lines
