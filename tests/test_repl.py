"""The REPL driven through prompt_toolkit's pipe input, with a scripted engine."""

from __future__ import annotations

import json
import os
import stat

import pytest

from chatterm import sessions
from chatterm.loader import RunOptions
from chatterm.ui.prompt_keys import SlashCompleter
from chatterm.ui.repl import Repl
from tests.helpers import drive


def saved_messages(repl: Repl) -> list[dict]:
    return json.loads(repl.session.path.read_text())["messages"]


def test_question_answer_and_session_saved_after_each_turn(fake_model):
    repl, out = drive("hello\rsecond\r", fake_model("Hi **there**", "Again"))
    assert "Hi **there**" in out and "Again" in out
    saved = saved_messages(repl)
    assert [m["role"] for m in saved] == ["system", "user", "assistant", "user", "assistant"]
    assert saved[2] == {"role": "assistant", "content": "Hi **there**", "finish": "eog"}


def test_session_files_are_private_and_leave_no_temporary_files(fake_model):
    repl, _ = drive("hello\r", fake_model("ok"))
    path = repl.session.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob(".*.tmp"))


def test_a_save_that_fails_midway_leaves_the_old_file_whole(fake_model, monkeypatch):
    """Atomic: the new file is written and synced beside the old one, then renamed over it."""
    import os

    repl, _ = drive("first\r", fake_model("one"))
    path = repl.session.path
    before = path.read_bytes()

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)  # the disk fills while the new version is written
    repl.conversation.messages.append({"role": "user", "content": "second"})
    with pytest.raises(sessions.SessionError, match="No space left"):
        repl.save()
    assert path.read_bytes() == before and not list(path.parent.glob(".*.tmp"))


def test_esc_enter_inserts_a_newline_and_paste_is_one_message(fake_model):
    repl, _ = drive("line one\x1b\rline two\r\x1b[200~pasted\nmany\nlines\x1b[201~\r", fake_model("one", "two"))
    users = [m["content"] for m in repl.conversation.messages if m["role"] == "user"]
    assert users == ["line one\nline two", "pasted\nmany\nlines"]


def test_save_json_and_md_then_load(tmp_path, fake_model):
    j, md = tmp_path / "chat.json", tmp_path / "chat.md"
    _, out = drive(f"question\r/save {j}\r/save {md}\r", fake_model("Answer one"))
    assert f"saved to {j}" in out and f"saved to {md}" in out
    assert json.loads(j.read_text())["messages"][-1]["content"] == "Answer one"
    assert "## You\n\nquestion" in md.read_text() and "Answer one" in md.read_text()
    repl, out = drive(f"/load {j}\r", fake_model("x"))
    assert [m["content"] for m in repl.conversation.messages] == ["SYS", "question", "Answer one"]
    assert "Answer one" in out


def test_continue_appends_to_the_cut_reply(fake_model):
    loaded = fake_model("abcdefghij", "klm", sampling={"max_tokens": 5})
    repl, out = drive("go\r/continue\r", loaded)
    last = repl.conversation.messages[-1]
    assert last["content"] == "abcdeklm" and last["finish"] == "eog"
    assert "(reached max_tokens: /continue resumes it)" in out
    # The continuation prompt was the first turn's ids plus nothing new.
    engine = loaded.backend.engine
    assert engine.prompts[1][:len(engine.prompts[0])] == engine.prompts[0]


def test_retry_keeps_the_old_reply_and_undo_removes_the_exchange(fake_model):
    repl, out = drive("q\r/retry\r", fake_model("first", "second"))
    assert [m["content"] for m in saved_messages(repl)] == ["SYS", "q", "second"]
    assert saved_messages(repl)[-1]["alternatives"] == [[{"role": "assistant", "content": "first", "finish": "eog"}]]
    assert "(alternative 2 of 2: /alt N switches" in out
    repl, out = drive("q\r/undo\r/undo\r", fake_model("first"))
    assert saved_messages(repl) == [{"role": "system", "content": "SYS"}]
    assert "removed the last exchange" in out and "error: nothing to undo" in out


def test_system_prompt_set_and_shown(fake_model):
    repl, out = drive("/system Be terse.\r/system\r", fake_model())
    assert saved_messages(repl) == [{"role": "system", "content": "Be terse."}]
    assert "system prompt: 'Be terse.'" in out


def test_set_changes_sampling_and_is_saved_and_shown(fake_model):
    repl, out = drive("/set temperature 0.3\r/set seed 7\r/set seed none\r/set top_p 2\r/set\r", fake_model())
    assert repl.conversation.sampling.temperature == 0.3 and repl.conversation.sampling.seed is None
    assert json.loads(repl.session.path.read_text())["sampling"] == {"temperature": 0.3}
    assert "error: top_p = 2.0 is out of range (0-1)" in out
    assert "temperature     0.3  (set)" in out and "max_tokens      200\n" in out  # the entry's value
    repl, out = drive("/set temperature default\r", fake_model(), options=RunOptions(sampling={"temperature": 0.1}))
    assert repl.conversation.sampling.temperature == 0.7 and "(the model's)" in out


def test_stats_and_help(fake_model):
    _, out = drive("q\r/stats\r/help\r", fake_model("answer"))
    assert "model     fake  x" in out and "engine    fake on CPU" in out
    assert "context   " in out and " / 4,096 tokens" in out and "messages  3  (session test)" in out
    assert "last      7 tokens" in out  # "answer" and the end of turn
    assert "Continue the last reply from where it stopped." in out  # /help's table


def test_errors_never_end_the_loop(fake_model):
    _, out = drive("/nope\r/set temperature hot\r/copy\r/load /no/such.json\r/continue\rhello\r",
                   fake_model("still here", system=None))
    assert "unknown command /nope" in out and "temperature must be a number, not 'hot'" in out
    assert "no code blocks" in out and "no session" in out and "there is no reply to continue" in out
    assert "still here" in out


def test_an_engine_failure_is_recorded_as_a_failed_reply(fake_model):
    loaded = fake_model()
    loaded.backend.engine.fail("the engine broke")
    loaded.backend.engine.fail("broke again", after="half an ans")
    repl, out = drive("q\r/retry\r", loaded)
    assert "error: the engine broke; /retry asks again" in out
    assert "error: broke again; the reply so far is kept: /continue resumes it" in out
    assert saved_messages(repl)[1:] == [{"role": "user", "content": "q"},
                                        {"role": "assistant", "content": "half an ans", "finish": "error"}]


def test_a_retry_that_fails_keeps_the_question_and_the_old_reply(fake_model):
    loaded = fake_model("the first answer", n_ctx=300)
    loaded.backend.engine.fail("the engine broke")
    repl, out = drive(f"q\r/retry\r/system {'long ' * 100}\r/retry\r", loaded)
    assert "error: the engine broke" in out and "context window holds 300" in out
    assert saved_messages(repl)[1:] == [{"role": "user", "content": "q"},
                                        {"role": "assistant", "content": "the first answer", "finish": "eog"}]


def test_message_larger_than_the_window_is_refused_and_kept_for_editing(fake_model):
    # Enter again re-sends what was left in the input; Ctrl-C then clears it.
    repl, out = drive("y" * 400 + "\r\r\x03", fake_model("x", n_ctx=200))
    assert out.count("context window holds 200") == 2
    assert all(m["role"] == "system" for m in repl.conversation.messages)


def test_copy_code_block(monkeypatch, fake_model):
    copied = []
    monkeypatch.setattr("chatterm.ui.commands.files.copy_to_clipboard", lambda text: copied.append(text) or "test")
    _, out = drive("code\r/copy 1\r/copy 2\r", fake_model("Here:\n```python\nprint('hi')\n```\n"))
    assert copied == ["print('hi')"] and "copied code block 1 (test)" in out
    assert "no code block 2; the last reply has 1" in out


def test_model_switch_keeps_the_conversation_and_the_settings(fake_model):
    first = fake_model("from A", name="a")
    second = fake_model("from B", name="b", sampling={"max_tokens": 50, "top_k": 5})
    repl, out = drive("hi\r/set temperature 0.2\r/model b\rnext\r", first, load=lambda options: second)
    assert [m["content"] for m in repl.conversation.messages] == ["SYS", "hi", "from A", "next", "from B"]
    assert "now chatting with b" in out and first.backend.engine.closed
    sampling = repl.conversation.sampling
    assert (sampling.temperature, sampling.top_k, sampling.max_tokens) == (0.2, 5, 50)


def test_ctrl_c_or_a_failure_while_a_model_loads_leaves_the_chat_as_it_was(fake_model):
    def interrupted(options):
        raise KeyboardInterrupt  # Ctrl-C while a server is asked for its model

    repl, out = drive("/model b\rhi\r", fake_model("still A", name="a"), load=interrupted)
    assert "(stopped)" in out and "still A" in out and repl.loaded.spec.name == "a"


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


def test_completion_of_commands_paths_models_and_settings(tmp_path, user_models_toml):
    from prompt_toolkit.document import Document
    completer = SlashCompleter()
    user_models_toml(f'[models.tinyllama]\npath = "{tmp_path}/t.gguf"\n')

    def complete(text):
        return [c.text for c in completer.get_completions(Document(text), None)]
    assert "/save" in complete("/sa") and "/sessions" in complete("/se")
    (tmp_path / "notes.json").write_text("{}")
    assert complete(f"/load {tmp_path}/no") == ["tes.json"]
    assert complete("/model ti") == ["tinyllama"]
    assert complete("/set tem") == ["temperature"]
    assert complete("/set seed ") == ["default", "none"] and complete("/set top_k d") == ["default"]


def test_the_repl_survives_errors_in_the_toolbar_commands_and_rendering(fake_model, monkeypatch):
    from chatterm.ui import render
    from chatterm.ui.commands import registry

    def broken(ctx, arg):
        raise RuntimeError("a command broke")

    monkeypatch.setitem(registry.COMMANDS, "broken", registry.Command("broken", "", "", broken))
    real_feed, calls = render.StreamRenderer.feed, []

    def feed_once_broken(self, chunk):
        calls.append(chunk)
        if len(calls) == 1:
            raise ValueError("rendering broke")
        real_feed(self, chunk)

    monkeypatch.setattr(render.StreamRenderer, "feed", feed_once_broken)
    loaded = fake_model("first", "second")
    repl, out = drive("/broken\rone\rtwo\r", loaded)
    monkeypatch.setattr(type(repl.conversation), "measured", property(lambda self: 1 / 0))
    assert "ZeroDivisionError" in repl.toolbar()[0][1]  # drawn anyway
    assert "unexpected error: RuntimeError: a command broke" in out
    assert "unexpected error: ValueError: rendering broke" in out
    replies = [m for m in repl.conversation.messages if m["role"] == "assistant"]
    # The reply whose rendering broke is kept as far as it streamed, cut; the next is whole.
    assert [(m["content"], m["finish"]) for m in replies] == [("f", "cancelled"), ("second", "eog")]
