"""The first hour with a real model (issue 40): a session reopens on the model that
made it, one-shot answers are kept as sessions, a one-shot without an answer or cut at
a limit says so, and what the engine runs on is said to people, not to scripts."""

from __future__ import annotations

import json

from chatterm import sessions
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import one_line_error, run
from tests.modelgen import tiny_model


def saved() -> list[dict]:
    folder = sessions.sessions_dir()
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)] \
        if folder.is_dir() else []


def test_a_session_goes_on_with_the_model_that_made_it(tmp_path, default_gguf):
    model = tiny_model(tmp_path / "mine.gguf", default_gguf)
    first = run("-m", str(model), "--max-tokens", "2", stdin=b"hello")
    assert first.returncode == 0, first.stderr
    (made,) = saved()
    assert made["model"] == str(model) and [m["content"] for m in made["messages"] if m["role"] == "user"] == ["hello"]
    again = run("-c", "--max-tokens", "2", stdin=b"and again")  # no -m: the session's model
    assert again.returncode == 0, again.stderr
    (went_on,) = saved()
    assert went_on["model"] == str(model) and [m["content"] for m in went_on["messages"] if m["role"] == "user"] \
        == ["hello", "and again"]
    assert b"not here" not in again.stderr
    model.rename(tmp_path / "moved.gguf")  # the model is gone: said, and the default answers
    moved = run("-c", "--max-tokens", "2", stdin=b"third")
    assert moved.returncode == 0, moved.stderr
    assert f"was made with {model}, which is not here: answering with smollm2".encode() in moved.stderr
    assert saved()[0]["model"] == "smollm2"


def test_one_shot_answers_are_kept_unless_told_not_to():
    with FakeServer([event("four"), DONE], model_id="m") as fake:
        assert run("--base-url", fake.url, "--no-save", stdin=b"2+2?").returncode == 0
        assert saved() == []
        assert run("--base-url", fake.url, stdin=b"2+2?").returncode == 0
        assert run("--base-url", fake.url, stdin=b"3+1?").returncode == 0  # the same second: another name
        assert run("--base-url", fake.url, "--session", "maths", stdin=b"1+3?").returncode == 0
    kept = saved()
    said = [[m["content"] for m in s["messages"] if m["role"] != "system"] for s in kept]
    assert said == [["2+2?", "four"], ["3+1?", "four"], ["1+3?", "four"]]
    assert kept[-1]["name"] == "maths"


def test_a_one_shot_cut_at_max_tokens_says_so():
    with FakeServer([event("a b c"), b'data: {"choices": [{"delta": {}, "finish_reason": "length"}]}\n\n', DONE],
                    model_id="m") as fake:
        r = run("--base-url", fake.url, "--max-tokens", "3", stdin=b"count")
    assert r.returncode == 0 and r.stdout.decode().startswith("a b c")
    assert "the reply was cut at --max-tokens 3: chatterm -c opens the session" in r.stderr.decode()


def test_a_one_shot_without_an_answer_exits_non_zero_with_why(tmp_path):
    call = '<tool_call>{"name": "run", "arguments": {"command": "true"}}</tool_call>'
    with FakeServer([event(call), DONE], model_id="m") as fake:  # the model only ever calls
        r = run("--base-url", fake.url, "--tools", "run", "--yes", "run", stdin=b"hi", cwd=tmp_path, timeout=120)
    line = one_line_error(r)
    assert "no answer: the model made the same call 3 times" in line, line
    broken = '<tool_call>{"name": "run", "arguments": {"command": "true"</tool_call>'  # never valid JSON
    with FakeServer([event(broken), DONE], model_id="m") as fake:
        r = run("--base-url", fake.url, "--tools", "run", "--yes", "run", stdin=b"hi", cwd=tmp_path, timeout=120)
        asked = len([q for q in fake.requests if q["path"].endswith("/chat/completions")])
    assert "no answer: the model made the same call 3 times" in one_line_error(r) and asked == 3
    with FakeServer([event("   "), DONE], model_id="m") as fake:
        assert "no answer: the model's reply was empty" in one_line_error(run("--base-url", fake.url, stdin=b"hi"))


def test_what_the_engine_runs_on_is_not_said_to_a_pipe(tmp_path, default_gguf):
    model = tiny_model(tmp_path / "m.gguf", default_gguf)
    r = run("-m", str(model), "--max-tokens", "2", "--no-save", stdin=b"hi")
    assert r.returncode == 0 and b"running on the CPU" not in r.stderr, r.stderr


def test_a_fresh_chat_with_a_model_by_path_has_an_empty_window(qwen_coder):
    """Qwen's template cannot render a conversation of no messages: the window is empty,
    not full (the toolbar said `ctx 4,096/4,096 (100%)`)."""
    from chatterm.loader import RunOptions
    from tests.helpers import converse

    chat = converse(RunOptions(model=str(qwen_coder)))
    try:
        assert chat.ready() and chat.messages == []
        assert chat.measure() == 0
        chat.messages.append({"role": "user", "content": "hi"})
        chat.measure_again()
        assert 0 < chat.measure() < 50
    finally:
        chat.model.close()


def test_a_truncated_model_file_is_said_in_the_files_terms(tmp_path, qwen_coder):
    for size in (100, 5_000, 3_000_000):
        cut = tmp_path / "cut.gguf"
        with open(qwen_coder, "rb") as f:
            cut.write_bytes(f.read(size))
        line = one_line_error(run("-m", str(cut), "--no-save", "hi"))
        assert f"truncated: the file has {size:,} bytes" in line and "unpack" not in line, line


def test_a_schema_that_is_neither_json_nor_a_file_says_so():
    line = one_line_error(run("--schema", "not json", "--no-save", "hi"))
    assert "'not json' is neither a JSON Schema" in line and "no such file" not in line
    assert "no such file missing.json" in one_line_error(run("--schema", "missing.json", "--no-save", "hi"))


def test_a_model_on_disk_gets_a_name_that_every_command_knows(tmp_path, default_gguf):
    from chatterm.models.catalog import Catalog

    model = tiny_model(tmp_path / "tiny.gguf", default_gguf)
    added = run("models", "add", "tiny", str(model))
    assert added.returncode == 0 and "chat with it: chatterm -m tiny" in added.stdout.decode(), added.stderr
    spec = Catalog.load().models["tiny"]
    llama = next(s for s in Catalog.load().models.values() if s.architecture == "llama" and s.downloadable)
    assert spec.model_path() == model and spec.sha256 and spec.sha256[0] == __import__("hashlib").sha256(
        model.read_bytes()).hexdigest()
    assert (spec.template, spec.stop, spec.sampling) == (llama.template, llama.stop, llama.sampling)
    assert "already a model in your models.toml" in one_line_error(run("models", "add", "tiny", str(model)))
    assert "already a model in chatterm's catalogue" in one_line_error(run("models", "add", "smollm2", str(model)))
    assert "a folder" in one_line_error(run("models", "add", "x", str(tmp_path)))
    (tmp_path / "notes.txt").write_text("not a model")
    assert "not a GGUF or GGML model file" in one_line_error(run("models", "add", "x", str(tmp_path / "notes.txt")))
    other = tiny_model(tmp_path / "other.gguf", default_gguf, seed=3)
    assert run("models", "add", "tiny", str(other), "--replace").returncode == 0
    assert Catalog.load().models["tiny"].model_path() == other
    assert run("-m", "tiny", "--max-tokens", "2", stdin=b"hi").returncode == 0
    assert saved()[0]["model"] == "tiny"
    assert run("-c", "--max-tokens", "2", stdin=b"more").returncode == 0 and saved()[0]["model"] == "tiny"
    shown = run("show", "tiny")
    assert shown.returncode == 0 and str(other) in shown.stdout.decode()


def test_show_tells_of_a_catalogue_model_not_downloaded():
    r = run("show", "qwen2.5-7b")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "downloaded:    no: chatterm pull qwen2.5-7b gets it" in out and "Q4_K_M" in out and "to download" in out


def test_something_moves_before_the_first_token(spawn):
    """From Enter to the first token a spinner says what is going on, and goes."""
    # The server says nothing (an SSE comment) for 1.5 s before the first token.
    with FakeServer([b": busy\n\n", event("the answer"), DONE], delay_s=1.5, model_id="m") as fake:
        child = spawn("--base-url", fake.url, threads=False)
        child.sendline("a question")
        child.expect("reading the prompt")
        child.expect(r"\d s")
        child.expect("the answer")
        child.expect("›")
        child.quit()


def test_a_reopened_session_marks_its_cut_replies_as_the_live_chat_did():
    from tests.fakes import fake_loaded
    from tests.helpers import drive

    stored = sessions.Session(name="cut", messages=[
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "half an ans", "finish": "cancelled"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "long", "finish": "length"}])
    stored.save()
    _, out = drive("/load cut\r", fake_loaded())
    assert "half an ans\n(reply cut)\n" in out  # an earlier one: /continue cannot resume it
    assert "long\n(reached max_tokens: /continue resumes it)\n" in out


def test_the_chat_guide_lists_every_option_and_no_other():
    """docs/guide/chat.md's table of options is the options `chatterm --help` has."""
    import re
    from pathlib import Path

    from chatterm.cli import chat

    table = Path(__file__).parents[1].joinpath("docs/guide/chat.md").read_text(encoding="utf-8")
    table = table[table.index("Options (`chatterm --help`"):]
    table = table[:table.index("\n\n", table.index("| what |"))]
    documented = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", table))
    existing = {o for p in chat.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)}
    existing |= {"-h", "--help"}
    assert documented == existing, (sorted(existing - documented), sorted(documented - existing))
    help_text = run("--help").stdout.decode()
    assert all(o in help_text for o in existing)
    assert "coder" in help_text  # --role names the roles there are
