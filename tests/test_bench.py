"""The benchmark's own parts, and one smoke run of `python -m chatterm.bench --quick`
end to end on the default model (tiny sizes: it checks the figures come out, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chatterm.bench import engine as eb
from chatterm.bench.renderer import CHARS_PER_TOKEN, render_time, synthetic_tokens
from chatterm.bench.stats import Figure, Target
from chatterm.bench.terminal import PseudoTerminal
from chatterm.conversation.generation import Generation
from chatterm.engines.base import Decoding
from tests.fakes import FakeEngine


def test_synthetic_reply_has_the_asked_length_and_code_blocks():
    tokens = synthetic_tokens(1000)
    assert len(tokens) == 1000
    assert all(len(t) == CHARS_PER_TOKEN for t in tokens)
    text = "".join(tokens)
    assert text.count("```python") >= 3 and "中文" in text


def test_rendering_reaches_the_pseudo_terminal():
    with PseudoTerminal() as terminal:
        render_time(synthetic_tokens(300), terminal)
        terminal.file.flush()
    assert terminal.received > 300 * CHARS_PER_TOKEN  # the text, plus styling


def test_figures_summarise_runs_and_targets_judge_them():
    f = Figure("s", "decode", "tok/s", [90.0, 110.0, 100.0])
    assert (f.median, f.low, f.high) == (100.0, 90.0, 110.0)
    assert Target("x", 97.5, 97, True).met and not Target("x", 96.9, 97, True).met
    assert Target("y", 1.2, 1.3, False).met and not Target("y", 1.31, 1.3, False).met


def test_benchmark_replies_go_on_past_the_end_of_generation():
    """The end-of-generation check still runs (it is part of the per-token cost) but
    does not end a benchmark's reply."""
    engine = FakeEngine()
    engine.queue("ab", "cd")  # the model would go on after its end of turn
    checked = []
    real = engine.is_eog
    engine.is_eog = lambda token: checked.append(token) or real(token)  # type: ignore[method-assign]
    gen = Generation(engine, [1], eb.greedy(50))
    assert gen.run() == "abcd"  # past the end of turn: a reply stopped there would be "ab"
    assert gen.tokens == [ord("a"), ord("b"), FakeEngine.EOT, ord("c"), ord("d"), FakeEngine.EOT]
    assert checked.count(FakeEngine.EOT) == 2
    engine.queue("ab")
    gen = Generation(engine, [1], Decoding(max_tokens=50))
    gen.run()
    assert gen.finish == "eog" and gen.tokens[-1] == FakeEngine.EOT


def test_quick_benchmark_run_prints_and_writes_every_section(tmp_path: Path, default_model_path: Path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "chatterm.bench", "--quick", "--engine", "llama.cpp",
         "--only", "render,engine,process,sessions", "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Targets" in result.stdout and "pipeline / raw engine" in result.stdout
    data = json.loads(out.read_text())
    assert data["machine"]["versions"]["llama-cpp-python"]
    sections = {f["section"].split(" (")[0] for f in data["figures"]}
    assert {"Renderer", "Engine llama.cpp", "Whole process", "Saved sessions: 50 files, 1 MB"} <= sections
    rare = next(f for f in data["figures"] if f["name"] == "--search rare word, 1 session")
    assert rare["note"] == "1 hits"  # the one session that has it, found
    for figure in data["figures"]:
        assert figure["runs"] >= 1 and figure["median"] > 0, figure
    names = {t["name"] for t in data["targets"]}
    assert "chatterm --help (s)" in names and "llama.cpp: one-shot total / minimal script" in names
    assert "--search of 50 sessions, rare word (s)" in names
