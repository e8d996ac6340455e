"""Engines isolated in a worker process: a native crash, abort, kill or hang never ends
the chat, on any x86-64 CPU. Real workers and real models; the crashes are real
signals sent to the worker mid-reply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from chatterm import engines
from chatterm.conversation.generation import Generation
from chatterm.engines.base import SAFE_SETTINGS, Decoding, LoadOptions
from chatterm.engines.isolated import EngineCrashed
from chatterm.engines.recovery import GENERATING, LOADING, PROMPT, Attempt, Recovery
from chatterm.loader import RunOptions
from chatterm.models import hardware
from tests.helpers import converse, one_line_error, worker_pid
from tests.modelgen import tiny_model

ESSAY = "Write a long essay about the history of Rome."
SIGNALS = [signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL]


def chat_on(engine: str = "llama.cpp", **sampling):
    return converse(RunOptions(engine=engine, threads=2,
                               sampling={"temperature": 0.0, "max_tokens": 2000, **sampling}))


def stream_then(chat, question: str, after_chunks: int, action) -> list[str]:
    """Stream a reply, run `action` once `after_chunks` chunks arrived, return the chunks."""
    chunks = []
    for chunk in chat.send(question):
        chunks.append(chunk)
        if len(chunks) == after_chunks:
            action()
    return chunks


# ------------------------------------------------------------------ the CPU
def test_weight_repacking_is_off_exactly_on_cpus_with_amx():
    assert hardware.repack_off_reason(frozenset({"avx2", "fma"})) is None
    assert hardware.repack_off_reason(frozenset({"avx2", "avx512f"})) is None
    reason = hardware.repack_off_reason(frozenset({"avx512f", "amx_tile", "amx_int8", "amx_bf16"}))
    assert reason is not None and "AMX" in reason


def test_this_cpu_gets_its_settings_and_says_so(tiny_llama):
    """On whichever CPU the tests run: llama.cpp loads without repacking where AMX is,
    says so in its notes (/stats shows them), and answers either way."""
    amx = bool(hardware.cpu_flags() & {"amx_int8", "amx_tile", "amx_bf16"})
    engine = engines.load("llama.cpp", LoadOptions(path=tiny_llama, n_ctx=256, threads=2, gpu_layers=0))
    try:
        assert any("AMX" in note for note in engine.notes) == amx
        gen = Generation(engine, engine.tokenize("The quick brown fox"), Decoding(temperature=0, max_tokens=6))
        gen.run()
        assert len(gen.tokens) == 6
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["llama.cpp", "ctransformers"])
def test_safe_settings_run_and_are_named(tiny_llama, name):
    engine = engines.load(name, LoadOptions(path=tiny_llama, n_ctx=256, threads=2, safe=True))
    try:
        assert SAFE_SETTINGS in engine.notes and engine.device == "CPU"
        gen = Generation(engine, engine.tokenize("The quick brown fox"), Decoding(temperature=0, max_tokens=6))
        gen.run()
        assert len(gen.tokens) == 6
    finally:
        engine.close()


# ------------------------------------------------------------------ the ladder
def test_recovery_climbs_only_when_a_crash_repeats_at_the_same_point():
    r = Recovery("llama.cpp", ["ctransformers"])
    assert r.after_crash(GENERATING) == Attempt("llama.cpp")  # a one-off: the same again
    assert r.after_crash(PROMPT) == Attempt("llama.cpp")  # another point: still a one-off
    assert r.after_crash(PROMPT) == Attempt("llama.cpp", safe=True)
    assert r.after_crash(PROMPT) == Attempt("ctransformers", safe=True)
    assert r.after_crash(PROMPT) is None


def test_a_crash_while_loading_climbs_at_once():
    r = Recovery("ctransformers", [])
    assert r.after_crash(LOADING) == Attempt("ctransformers", safe=True)
    assert r.after_crash(LOADING) is None
    assert "safe settings" in Attempt("x", safe=True).says(Attempt("x"))
    assert "switching to y" in Attempt("y", safe=True).says(Attempt("x", safe=True))


# ------------------------------------------------------------------ the worker
def test_the_chat_starts_before_the_model_has_loaded():
    chat = chat_on()
    try:
        assert chat.engine.state() == "loading"  # loader.load returned at once
        assert chat.ready() and chat.engine.state() == "ready"
        assert "Paris" in "".join(chat.send("What is the capital of France?"))
    finally:
        chat.engine.close()


@pytest.mark.parametrize("name", ["llama.cpp", "ctransformers"])
def test_isolated_and_in_process_engines_agree(tiny_llama, name):
    options = LoadOptions(path=tiny_llama, n_ctx=256, threads=2, gpu_layers=0)
    results = []
    for engine in (engines.start(name, options, "tiny"), engines.load(name, options)):
        try:
            prompt = engine.tokenize("The quick brown fox 中文")
            gen = Generation(engine, prompt, Decoding(temperature=0, max_tokens=12))
            results.append((prompt, gen.run(), gen.tokens, engine.n_ctx,
                            engine.detokenize(gen.tokens, special=True)))
        finally:
            engine.close()
    assert results[0] == results[1]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_crash_mid_reply_keeps_the_reply_and_the_next_question_is_answered(sig):
    chat = chat_on()
    try:
        chat.ready()
        first = chat.engine.pid
        assert "Paris" in "".join(chat.send("What is the capital of France?"))
        with pytest.raises(EngineCrashed) as crash:
            stream_then(chat, ESSAY, 5, lambda: os.kill(first, sig))
        message = str(crash.value)
        assert f"({sig.name}" in message and "llama.cpp" in message and "smollm2" in message
        assert "restarting it" in message
        cut = chat.messages[-1]
        assert cut["role"] == "assistant" and cut["finish"] == "error"
        assert len(cut["content"]) >= 5 and ESSAY in chat.messages[-2]["content"]
        assert "Paris" in chat.messages[2]["content"]  # the completed turn is still there
        assert "Berlin" in "".join(chat.send("What is the capital of Germany?"))
        assert chat.engine.pid != first
    finally:
        chat.engine.close()


def test_repeated_crashes_move_to_safe_settings_then_to_the_other_engine():
    chat = chat_on()
    try:
        said = []
        for _ in range(3):
            chat.ready()
            pid = chat.engine.pid
            with pytest.raises(EngineCrashed) as crash:
                stream_then(chat, ESSAY, 3, lambda pid=pid: os.kill(pid, signal.SIGSEGV))
            said.append(str(crash.value))
        assert "; restarting it (" in said[0]
        assert "restarting it with safe settings" in said[1]
        assert "switching to ctransformers" in said[2]
        assert chat.engine.name == "ctransformers" and SAFE_SETTINGS in chat.engine.notes
        more = "".join(chat.continue_reply())  # the cut reply resumes on the other engine
        assert more and chat.messages[-1]["content"].endswith(more)
    finally:
        chat.engine.close()


def test_a_crash_while_loading_is_told_once_and_the_next_attempt_loads():
    chat = chat_on()
    try:
        os.kill(chat.engine.pid, signal.SIGKILL)
        with pytest.raises(EngineCrashed, match=r"crashed \(SIGKILL.*while loading .*\.gguf; restarting it with safe"):
            chat.ready()
        assert chat.ready() and SAFE_SETTINGS in chat.engine.notes
    finally:
        chat.engine.close()


@pytest.mark.parametrize("name", ["llama.cpp", "ctransformers"])
def test_cancelling_a_long_prompt_evaluation_stops_it_at_once(name):
    chat = chat_on(name)
    try:
        chat.ready()
        flag = threading.Event()
        long_question = "Summarize this text: " + "the history of the Roman Empire and its provinces " * 250
        timer = threading.Timer(0.5, flag.set)
        timer.start()
        start = time.monotonic()
        reply = "".join(chat.send(long_question, cancelled=flag.is_set))
        waited = time.monotonic() - start - 0.5
        assert chat.last.finish == "cancelled" and reply == "" and chat.last.prompt_tokens > 2000
        assert waited < 1.0, f"stopped {waited:.2f} s after Ctrl-C"
        # The engine's state is consistent after the abort: the next turn is answered.
        chat.undo()
        assert "Paris" in "".join(chat.send("What is the capital of France?"))
    finally:
        chat.engine.close()


def test_an_aborted_prompt_leaves_llama_cpp_in_a_consistent_state(tmp_path, default_gguf):
    """After an abort mid-prompt, the same prompt continues from what was evaluated and
    gives the tokens a fresh engine gives."""
    model = tiny_model(tmp_path / "tiny-2k.gguf", default_gguf, n_ctx=2048)
    options = LoadOptions(path=model, n_ctx=2048, threads=2, gpu_layers=0)
    engine = engines.load("llama.cpp", options)
    fresh = engines.load("llama.cpp", options)
    try:
        prompt = engine.tokenize("one two three four five six seven eight nine ten " * 60)
        assert len(prompt) > 600
        checks_in_second_batch = []

        def cancel_inside_the_second_batch() -> bool:  # llama.cpp asks between graph nodes
            if engine._evaluated:
                checks_in_second_batch.append(1)
            return len(checks_in_second_batch) > 5

        assert list(engine.generate(prompt, Decoding(temperature=0), cancel_inside_the_second_batch)) == []
        assert len(engine._evaluated) == 512 < len(prompt)  # the first batch, not the aborted one
        sampling = Decoding(temperature=0, max_tokens=8)
        assert Generation(engine, prompt, sampling).run() == Generation(fresh, prompt, sampling).run()
    finally:
        engine.close()
        fresh.close()


def test_a_hung_engine_is_killed_when_asked_to_stop_and_restarted():
    chat = chat_on()
    try:
        chat.ready()
        pid = chat.engine.pid
        flag = threading.Event()

        def hang_then_cancel() -> None:
            os.kill(pid, signal.SIGSTOP)  # no token ever comes again
            threading.Timer(0.3, flag.set).start()

        start = time.monotonic()
        with pytest.raises(EngineCrashed, match="did not stop within 2 s and was killed; restarting it"):
            for i, _ in enumerate(chat.send(ESSAY, cancelled=flag.is_set)):
                if i == 3:
                    hang_then_cancel()
        assert time.monotonic() - start < 10
        assert chat.messages[-1]["finish"] == "error" and chat.messages[-1]["content"]
        assert "Paris" in "".join(chat.send("What is the capital of France?"))
    finally:
        chat.engine.close()


# ------------------------------------------------------------------ the one-shot CLI
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_one_shot_crash_is_one_line_and_exit_1(sig):
    child = subprocess.Popen([sys.executable, "-m", "chatterm", "--temperature", "0", "--max-tokens", "2000", ESSAY],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    shown = child.stdout.read(40)  # the reply is streaming
    os.kill(worker_pid(child.pid), sig)
    out, err = child.communicate(timeout=60)
    r = subprocess.CompletedProcess(child.args, child.returncode, shown + out, err)
    line = one_line_error(r)
    assert f"crashed ({sig.name}" in line and "llama.cpp" in line and "smollm2" in line
    assert len(r.stdout) > 40 and r.stdout.endswith(b"\n")  # what was streamed stays, line ended
