"""Speculative decoding on llama.cpp: prompt lookup and a draft model give the very greedy
replies decoding one token at a time gives, across turns (the trimmed caches reused);
a sampled reply keeps the model's distribution; a draft of another vocabulary is one
line; auto stops drafting where it does not pay."""

from __future__ import annotations

import collections
import ctypes
import math

import pytest

from chatterm.engines import speculation
from chatterm.engines.base import Decoding, LoadOptions
from chatterm.engines.llamacpp import LlamaCppEngine
from chatterm.loader import RunOptions
from chatterm.models import gguf
from chatterm.sessions import Session
from tests.helpers import converse, one_line_error, run
from tests.modelgen import tiny_model

CODE = "\n".join(f"def area_{i}(w, h):\n    return w * h * {i}\n" for i in range(12))
TURNS = [  # (question, follow-up): a reply that repeats the prompt, and ones that do not
    ("Rewrite this code, renaming area_3 to surface_3. Reply with the code only.\n\n" + CODE, "What does area_5 do?"),
    ("Write a short story about a robot who learns to paint.", "Now tell it again, shorter."),
    ("What is the capital of France? Explain its history.", "Repeat your answer word for word."),
]


def _q4_0(source, out):
    """`source` quantized to Q4_0 with llama.cpp's own quantize: a draft of it."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, True
    assert llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params)) == 0
    return out


@pytest.fixture(scope="module")
def draft_model(tmp_path_factory, default_model_path):
    """A Q4_0 draft made from the default model (Q4_1)."""
    return _q4_0(default_model_path, tmp_path_factory.mktemp("draft") / "smol-q4_0.gguf")


def _replies(speculate: str, draft=None, reproducible: bool = True) -> tuple[list[str], dict]:
    chat = converse(RunOptions(engine="llama.cpp", threads=2, isolated=False, speculate=speculate,
                               draft=str(draft) if draft else None, reproducible=reproducible))
    texts = []
    try:
        for turns in TURNS:
            chat.open(Session(name="", messages=chat.messages[:1]))
            chat.overrides = {"temperature": 0, "max_tokens": 120}
            for question in turns:
                for _ in chat.send(question):
                    pass
                texts.append(chat.last.text)
        return texts, chat.model.speculation
    finally:
        chat.model.close()


@pytest.fixture(scope="module")
def plain_replies():
    texts, report = _replies("off")
    assert report["kinds"] == {}  # off: not one verification
    return texts


@pytest.mark.parametrize("kind", ["ngram", "draft"])
def test_greedy_replies_are_identical_with_and_without_drafts(kind, plain_replies, draft_model):
    texts, report = _replies(kind, draft_model if kind == "draft" else None)
    assert texts == plain_replies  # every turn: the caches trimmed after rejected drafts are reused
    steps, drafted, accepted = report["kinds"][kind]
    assert steps > 10 and 0 < accepted < drafted  # drafts were verified, and some were rejected


def test_reproducible_mode_decodes_with_exact_batches(default_model_path, tiny_llama):
    """In reproducible mode the default model's weights (Q4_1, Q8_0) are multiplied alike
    one token at a time and in a batch, with flash attention and a Q8_0 cache; a model of
    F32 matrices is not, and it says why it does not speculate."""
    exact = LlamaCppEngine(LoadOptions(path=default_model_path, n_ctx=512, threads=2, reproducible=True,
                                       speculate="ngram"))
    other = LlamaCppEngine(LoadOptions(path=tiny_llama, n_ctx=512, threads=2, reproducible=True, speculate="ngram"))
    try:
        assert exact.exact_batches and exact.flash_attn and exact.speculation["off"] is None
        assert any("reproducible mode: batch-invariant" in n for n in exact.notes)
        assert not other.exact_batches and not other.flash_attn
        assert "F32 weights" in other.speculation["off"]
        assert other._speculation_kinds(Decoding(temperature=0)) == ()
    finally:
        exact.close()
        other.close()


def test_by_default_the_cpu_takes_its_fastest_kernels_and_auto_does_not_speculate(default_model_path):
    fast = LlamaCppEngine(LoadOptions(path=default_model_path, n_ctx=512, threads=2))
    try:
        assert not fast.exact_batches and not fast.flash_attn
        assert "on the CPU a verification batch costs" in fast.speculation["off"]
        assert fast._speculation_kinds(Decoding(temperature=0)) == ()
    finally:
        fast.close()


def _top_two_gap(engine: LlamaCppEngine, tokens: list[int]) -> float:
    """The gap between the two best logits after `tokens`, decoding them afresh."""
    engine.reset()
    engine._forget_after(0)
    assert engine._decode(tokens, lambda: False)
    logits = engine._lib.llama_get_logits_ith(engine._ctx, -1)
    best = sorted((logits[i] for i in range(engine._n_vocab)), reverse=True)[:2]
    return best[0] - best[1]


def test_by_default_a_greedy_reply_with_drafts_parts_only_at_a_near_tie(default_model_path):
    """Fast kernels round a batch unlike a single token: a greedy reply with prompt lookup
    keeps the model's choice everywhere but where the two best tokens are within rounding."""
    plain = LlamaCppEngine(LoadOptions(path=default_model_path, n_ctx=2048, threads=2, speculate="off"))
    drafting = LlamaCppEngine(LoadOptions(path=default_model_path, n_ctx=2048, threads=2, speculate="ngram"))
    try:
        greedy = Decoding(temperature=0, max_tokens=160)
        for question, _ in TURNS[:2]:
            prompt = plain.tokenize(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
            a = [t.id for t in plain.generate(prompt, greedy, limit=160)]
            b = [t.id for t in drafting.generate(prompt, greedy, limit=160)]
            k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
            if k is not None:
                assert _top_two_gap(plain, prompt + a[:k]) < 0.1
        assert drafting.speculation["kinds"]["ngram"][0] > 5  # drafts were verified
    finally:
        plain.close()
        drafting.close()


def _joint(engine: LlamaCppEngine, prompt: list[int], n: int) -> collections.Counter:
    sampling = Decoding(temperature=1.0, top_k=3, top_p=1.0, repeat_penalty=1.0)
    seen: collections.Counter = collections.Counter()
    for seed in range(n):
        seen[tuple(t.id for t in engine.generate(prompt, sampling.updated(seed=seed), limit=3))] += 1
    return seen


def test_a_sampled_reply_keeps_the_models_distribution(tiny_llama, monkeypatch):
    """Prompt lookup's drafts are certain tokens: keeping one when the model samples it too
    is speculative sampling's rule for them. Drafts are forced at every step (the newest
    token again), and the distribution of three sampled tokens must match plain decoding's
    (a chi-square test of homogeneity), while drafts were both kept and rejected."""
    monkeypatch.setattr(speculation.Lookup, "draft", lambda self, k: self.tokens[-1:] * 2)
    _sampled_alike(tiny_llama, "ngram", "one two three one two three one two")


def _sampled_alike(model, mode: str, text: str, draft=None, n: int = 1500) -> None:
    """`model` samples three tokens after `text` alike with speculation `mode` and
    without (`n` seeds each), and drafts were both kept and rejected."""
    counts = {}
    for speculate in ("off", mode):
        engine = LlamaCppEngine(LoadOptions(path=model, n_ctx=256, threads=2, speculate=speculate,
                                            draft=str(draft) if draft and speculate != "off" else None))
        try:
            counts[speculate] = _joint(engine, engine.tokenize(text), n)
            report = engine.speculation
        finally:
            engine.close()
    steps, drafted, accepted = report["kinds"][mode]
    assert steps >= n and 0.05 < accepted / drafted < 0.95
    _homogeneous(counts["off"], counts[mode])


def _homogeneous(a: collections.Counter, b: collections.Counter) -> None:
    """A chi-square test of homogeneity of two samples at the 0.1% level: a correct
    sampler fails 1 run in 1,000."""
    cells = [c for c in set(a) | set(b) if a[c] + b[c] >= 10]  # cells large enough for the test
    assert len(cells) >= 5
    chi2 = sum((a[c] - b[c]) ** 2 / (a[c] + b[c]) for c in cells)
    dof = len(cells) - 1
    critical = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3  # Wilson-Hilferty
    assert chi2 < critical, (chi2, critical, dof)


def test_a_sampled_reply_with_a_draft_model_keeps_the_models_distribution(tiny_llama, tmp_path):
    """A Q4_0 draft of the tiny model (so its q is near the model's p, not equal): drafts
    kept with probability min(1, p/q), the residual sampled at a rejection."""
    _sampled_alike(tiny_llama, "draft", "one two three one two", draft=_q4_0(tiny_llama, tmp_path / "tiny-q4_0.gguf"))


def test_a_draft_of_another_vocabulary_is_one_line(tmp_path, default_model_path, default_gguf):
    tokens = list(default_gguf.metadata["tokenizer.ggml.tokens"])
    tokens[1000], tokens[1001] = tokens[1001], tokens[1000]
    other = tiny_model(tmp_path / "other-vocab.gguf", default_gguf,
                       metadata={"tokenizer.ggml.tokens": tokens})
    assert "token 1000" in gguf.vocabulary_mismatch(default_gguf, gguf.read(other))
    r = run("--draft", str(other), "--speculate", "draft", "hello")
    line = one_line_error(r)
    assert "cannot draft for" in line and "another vocabulary (token 1000" in line
    same = tiny_model(tmp_path / "same-vocab.gguf", default_gguf)
    assert gguf.vocabulary_mismatch(default_gguf, gguf.read(same)) is None


def test_speculate_draft_without_a_draft_is_one_line():
    assert "needs a draft model" in one_line_error(run("--speculate", "draft", "hello"))


def test_auto_rests_a_kind_that_does_not_pay_and_probes_again_later():
    payoff = speculation.Payoff()
    assert not payoff.active()  # plain tokens are timed first: the figure to beat
    for _ in range(payoff.MEASURED):
        payoff.plain(0.010)
    assert payoff.active()
    for _ in range(payoff.PROBE):  # 2 tokens per 30 ms step: slower than 10 ms a token
        payoff.step(0.030, 2)
        if not payoff.active():
            break
    assert not payoff.active()
    for _ in range(payoff.REST):
        payoff.plain(0.010)
    assert payoff.active()  # probing again
    for _ in range(payoff.PROBE):  # now 8 tokens per 30 ms: it pays, and stays on
        payoff.step(0.030, 8)
    assert payoff.active()


def test_a_hopeless_probe_stops_at_once():
    payoff = speculation.Payoff()
    for _ in range(payoff.MEASURED):
        payoff.plain(0.010)
    payoff.step(0.050, 1)  # 50 ms for one token: five times slower
    assert not payoff.active()


def test_lookup_drafts_what_followed_the_newest_ngram():
    lookup = speculation.Lookup([1, 2, 3, 4, 5, 6, 1, 2])
    assert lookup.draft(3) == []  # (6, 1, 2) never occurred before
    lookup.add(3)
    assert lookup.draft(3) == [4, 5, 6]  # (1, 2, 3) did, followed by 4 5 6
    assert lookup.draft(10) == [4, 5, 6, 1, 2, 3]


def test_stats_lines_say_acceptance_and_tokens_per_step():
    lines = speculation.describe({"mode": "auto", "kinds": {"ngram": [10, 80, 60]}, "off": None})
    assert lines[0] == "auto"
    assert "60/80 drafted tokens accepted (75%)" in lines[1] and "7.00 tokens per verification step" in lines[1]
    assert speculation.describe({"mode": "auto", "kinds": {}, "off": "a recurrent model"}) == ["off: a recurrent model"]


def test_stats_in_a_real_terminal_shows_the_acceptance_rate(spawn):
    child = spawn("--temperature", "0", "--speculate", "ngram", "--max-tokens", "80")
    child.ask("Repeat exactly, three times: the quick brown fox jumps over the lazy dog.", "fox")
    child.expect("›")
    child.sendline("/stats")
    child.expect(r"speculate\s+ngram")
    child.expect(r"prompt lookup: (\d+)/(\d+) drafted tokens accepted \(\d+%\), ([\d.]+) tokens per verification step")
    accepted, drafted, per_step = int(child.match.group(1)), int(child.match.group(2)), float(child.match.group(3))
    assert 0 < accepted <= drafted and per_step > 1
    child.quit()
