"""The REPL driven through prompt_toolkit's pipe input, with a scripted engine."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from chatterm import sessions
from chatterm.catalog import ModelSpec
from chatterm.chat import Chat
from chatterm.engines.base import Sampling
from chatterm.loader import Loaded, RunOptions
from chatterm.repl import Repl, SlashCompleter
from chatterm.templates import resolve
from tests.fakes import FakeEngine


def fake_loaded(*replies, n_ctx=4096, name="fake") -> Loaded:
    engine = FakeEngine(n_ctx=n_ctx)
    engine.queue(*replies)
    chat = Chat(engine, resolve("chatml", None, bos="", eos=""), Sampling(max_tokens=200), system="SYS")
    return Loaded(chat, ModelSpec(name=name, source="path", location="x"), "x")


def drive(keys: str, loaded: Loaded, session: sessions.Session | None = None, loader=None):
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100, markup=False)
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text(keys + "\x04")  # Ctrl-D on the empty prompt quits
        repl = Repl(RunOptions(), session or sessions.Session(name="test"), loaded=loaded,
                    console=console, input=inp, output=DummyOutput(),
                    **({"loader": loader} if loader else {}))
        repl.run()  # ends at EOF of the pipe, like Ctrl-D
    return repl, out.getvalue()


def test_question_answer_and_session_saved_after_each_turn():
    repl, out = drive("hello\rsecond\r", fake_loaded("Hi **there**", "Again"))
    assert "Hi **there**" in out and "Again" in out
    saved = json.loads(repl.session.path.read_text())
    assert [m["role"] for m in saved["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert saved["messages"][2]["content"] == "Hi **there**"


def test_session_files_are_private_and_atomic():
    repl, _ = drive("hello\r", fake_loaded("ok"))
    path = repl.session.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob(".*.tmp"))


def test_esc_enter_inserts_a_newline_and_paste_is_one_message():
    loaded = fake_loaded("one", "two")
    drive("line one\x1b\rline two\r\x1b[200~pasted\nmany\nlines\x1b[201~\r", loaded)
    users = [m["content"] for m in loaded.chat.messages if m["role"] == "user"]
    assert users == ["line one\nline two", "pasted\nmany\nlines"]


def test_save_json_and_md_then_load(tmp_path):
    loaded = fake_loaded("Answer one")
    j, md = tmp_path / "chat.json", tmp_path / "chat.md"
    _, out = drive(f"question\r/save {j}\r/save {md}\r", loaded)
    assert f"saved to {j}" in out and f"saved to {md}" in out
    assert json.loads(j.read_text())["messages"][-1]["content"] == "Answer one"
    assert "## You\n\nquestion" in md.read_text() and "Answer one" in md.read_text()
    other = fake_loaded("x")
    repl, out = drive(f"/load {j}\r", other)
    assert [m["content"] for m in other.chat.messages] == ["SYS", "question", "Answer one"]
    assert "Answer one" in out


def test_continue_appends_to_the_cut_reply():
    loaded = fake_loaded("abcdefghij", "klm")
    loaded.chat.sampling = loaded.chat.sampling.updated(max_tokens=5)
    _, out = drive("go\r/continue\r", loaded)
    last = loaded.chat.messages[-1]
    assert last["content"] == "abcdeklm" and last["finish"] == "eog"
    assert "/continue resumes it" in out
    # The continuation prompt was the first turn's ids plus nothing new.
    engine = loaded.chat.engine
    assert engine.prompts[1][:len(engine.prompts[0])] == engine.prompts[0]


def test_retry_undo_system_set_stats_help():
    loaded = fake_loaded("first", "second")
    _, out = drive("q\r/retry\r/set temperature 0.3\r/system Be terse.\r/stats\r/help\r/undo\r", loaded)
    chat = loaded.chat
    assert chat.sampling.temperature == 0.3
    assert chat.messages == [{"role": "system", "content": "Be terse."}]
    assert "second" in out and "/continue" in out and "context" in out


def test_errors_never_end_the_loop():
    loaded = fake_loaded("still here")
    _, out = drive("/nope\r/set temperature hot\r/copy\r/load /no/such.json\rhello\r", loaded)
    assert "unknown command /nope" in out and "temperature must be a float" in out
    assert "no code blocks" in out and "no session" in out
    assert "still here" in out


def test_message_larger_than_the_window_is_refused_and_kept_for_editing():
    loaded = fake_loaded("x", n_ctx=200)
    # Enter again re-sends what was left in the input; Ctrl-C then clears it.
    repl, out = drive("y" * 400 + "\r\r\x03", loaded)
    assert out.count("context window holds 200") == 2
    assert all(m["role"] == "system" for m in loaded.chat.messages)


def test_copy_code_block(monkeypatch):
    copied = {}
    monkeypatch.setattr("chatterm.commands.copy_to_clipboard", lambda text: copied.setdefault("t", text) and "test")
    _, out = drive("code\r/copy 1\r", fake_loaded("Here:\n```python\nprint('hi')\n```\n"))
    assert copied["t"] == "print('hi')" and "copied code block 1" in out


def test_model_switch_keeps_the_conversation():
    first = fake_loaded("from A", name="a")
    second = fake_loaded("from B", name="b")
    _, out = drive("hi\r/model b\rnext\r", first, loader=lambda options: second)
    assert [m["content"] for m in second.chat.messages] == ["SYS", "hi", "from A", "next", "from B"]
    assert "now chatting with b" in out


def test_corrupt_session_file_is_a_clear_error():
    folder = sessions.sessions_dir()
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text("{not json")
    with pytest.raises(sessions.SessionError, match="corrupt"):
        sessions.load("bad")
    (folder / "bad2.json").write_text('{"messages": [{"role": "wizard"}]}')
    with pytest.raises(sessions.SessionError, match="corrupt"):
        sessions.load("bad2")


def test_leftover_temp_files_are_cleaned():
    folder = sessions.sessions_dir()
    folder.mkdir(parents=True)
    stale = folder / ".x.json.abc.tmp"
    stale.write_text("half")
    os.utime(stale, (1, 1))
    sessions.clean_leftovers()
    assert not stale.exists()


def test_completion_of_commands_paths_and_models(tmp_path):
    from prompt_toolkit.document import Document
    completer = SlashCompleter(lambda: ["smollm2", "tinyllama"])

    def complete(text):
        return [c.text for c in completer.get_completions(Document(text), None)]
    assert "/save" in complete("/sa") and "/sessions" in complete("/se")
    (tmp_path / "notes.json").write_text("{}")
    assert complete(f"/load {tmp_path}/no") == ["tes.json"]
    assert complete("/model ti") == ["tinyllama"]
    assert complete("/set tem") == ["temperature"]
