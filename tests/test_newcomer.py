"""What a newcomer hit on a first try of chatterm, each reproduced once and fixed: the
screen, the help, the settings as shown, the transcript file, the hints a new user
needs (a Chinese question to an English model, no network for `pull`)."""

from __future__ import annotations

import re
import sys

import pexpect
import pyte
import pytest
from rich.cells import cell_len

from chatterm.loader import RunOptions
from chatterm.ui.commands.registry import COMMANDS
from tests.fakes import fake_loaded
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import Terminal, drive, one_line_error, run


def test_a_one_shot_answer_cut_on_a_terminal_prints_each_line_once():
    words = [event(f"w{i:03d} ") for i in range(400)]  # one long paragraph, wrapping many times
    with FakeServer(words + [DONE], delay_s=0.01) as fake:
        child = Terminal("--base-url", fake.url, "write", dimensions=(24, 60), threads=False)
        screen = pyte.HistoryScreen(60, 24, history=1000)
        stream = pyte.Stream(screen)
        child.expect("w150")
        child.sendintr()
        child.expect(pexpect.EOF, timeout=20)
        stream.feed(child.transcript)
    lines = [line.rstrip() for line in [*("".join(c.data for c in row.values()) for row in screen.history.top),
                                         *screen.display] if line.strip()]
    words_seen = " ".join(lines).split()
    assert words_seen[:150] == [f"w{i:03d}" for i in range(150)]  # each word once, in order
    assert len(words_seen) == len(set(words_seen))


def test_a_question_written_in_the_editor_shows_in_the_transcript(tmp_path, monkeypatch):
    script = tmp_path / "editor.py"
    script.write_text("import sys\nopen(sys.argv[1], 'w').write('question from the editor')\n")
    monkeypatch.setenv("VISUAL", f"{sys.executable} {script}")
    repl, out = drive("/edit\r", fake_loaded("the answer"))
    assert "› question from the editor" in out and out.index("› question") < out.index("the answer")


def test_help_is_one_line_a_command_and_fits_a_short_screen():
    assert all("\n" not in c.help for c in COMMANDS.values())
    repl, out = drive("/help\r", fake_loaded(), width=100)
    lines = out.splitlines()
    assert len(lines) <= 30 and all(cell_len(line) <= 100 for line in lines)
    assert any(line.startswith("/edit") for line in lines)
    repl, out = drive("/help edit\r", fake_loaded())
    assert "the old question and its replies stay an alternative" in out


@pytest.mark.parametrize("width", [80, 120, 200])
def test_help_ends_its_lines_at_words(width):
    """At any width a help line is the command's help whole, or ended after a whole
    word with "…" (at 120 columns it read "prose agai")."""
    repl, out = drive("/help\r", fake_loaded(), width=width)
    helps = {f"/{c.name}": c.help for c in COMMANDS.values()}
    for line in out.splitlines():
        name = line.split(" ", 1)[0]
        if name not in helps:
            continue
        shown = line[len(name):].strip().split("  ")[-1].strip()
        whole = helps[name]
        if shown.endswith(" …"):
            kept = shown[:-2]
            assert whole.startswith(kept) and whole[len(kept)] in " ,;:(", (shown, whole)
        else:
            assert shown == whole, (shown, whole)


def test_quit_bye_and_q_leave_like_exit():
    for word in ("/quit", "/bye", "/q", "/exit"):
        repl, out = drive(f"{word}\rnever sent\r", fake_loaded("never"))
        assert "unknown command" not in out and "never sent" not in out


def test_the_toolbar_and_models_fit_100_columns(tmp_path):
    (tmp_path / "a.txt").write_text("notes " * 50)
    (tmp_path / "b.txt").write_text("more " * 50)
    repl, _ = drive(f"/file {tmp_path}/a.txt {tmp_path}/b.txt\r", fake_loaded())
    repl.conversation.measure()
    toolbar = repl.toolbar()[0][1]
    assert "+2 files (" in toolbar and cell_len(toolbar) <= 100, toolbar
    r = run("models")
    assert r.returncode == 0
    assert max(cell_len(line) for line in r.stdout.decode().splitlines()) <= 100


def test_the_context_asked_for_is_the_context_used(tiny_llama):
    from chatterm import loader

    for ctx in (64, 300):
        loaded = loader.load(RunOptions(model=str(tiny_llama), engine="llama.cpp", ctx=ctx, isolated=False))
        try:
            assert loaded.backend.engine.n_ctx == ctx  # llama.cpp allocates a multiple of 256
        finally:
            loaded.backend.engine.close()


def test_settings_are_shown_in_words_never_none(capsys):
    repl, out = drive("/set\r/think default\r/set seed default\r/set think off\r", fake_loaded())
    assert "None" not in out and "True" not in out and "False" not in out
    assert re.search(r"seed +random", out) and "think = as the model decides (the model's)" in out
    assert "think = off" in out


def test_think_on_a_model_without_a_switch_says_so():
    with FakeServer([event("hi"), DONE]) as fake:
        r = run("--base-url", fake.url, "--think", "hello")  # servers take the switch: no notice
    assert b"no switch for thinking" not in r.stderr
    r = run("--think", "--max-tokens", "4", "hello")  # the default model's template has none
    assert r.returncode == 0 and b"no switch for thinking: --think/--no-think has no effect" in r.stderr


def test_styled_output_into_a_pipe_has_no_cursor_codes_or_padding():
    with FakeServer([event("Hello "), event("there.\n\nSecond"), event(" paragraph."), DONE]) as fake:
        for env in ({}, {"NO_COLOR": "1"}):
            r = run("--base-url", fake.url, "--color", "always", "hi", env=env)
            out = r.stdout.decode()
            assert r.returncode == 0 and "Hello there." in out
            assert not re.search(r"\x1b\[\?25[lh]|\x1b\[2K|\x1b\[\d*A", out), repr(out)  # no cursor codes
            assert all(line == line.rstrip() for line in re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines())


def test_the_markdown_transcript_closes_a_fence_the_model_left_open(tmp_path):
    repl, out = drive(f"show code\r/save {tmp_path}/chat.md\rafter\r/save {tmp_path}/chat.md\r",
                      fake_loaded("Here:\n\n```python\nprint(1)", "fine"))
    text = (tmp_path / "chat.md").read_text()
    assert text.count("```") == 2 and text.index("## You", text.index("```python")) > text.rindex("```")


def test_role_marks_your_own_system_prompt_not_the_old_role():
    repl, out = drive("/role translator\r/system Be terse.\r/role\r", fake_loaded())
    listing = out[out.index("system prompt set"):]
    assert "› translator" not in listing and "› (your own system prompt" in listing


def test_a_message_too_large_stays_in_the_input_with_the_reason_in_the_toolbar():
    from chatterm.errors import ContextOverflowError

    paste = "word " * 5000
    repl, out = drive("", fake_loaded("never", n_ctx=512))
    with pytest.raises(ContextOverflowError):
        repl.ask(paste)
    toolbar = repl.toolbar()[0][1]
    assert repl.prefill == paste and "not sent: the prompt is" in toolbar and "/ctx N" in toolbar


def test_ctx_changes_the_window_inside_a_chat():
    def load(options):
        return fake_loaded("big enough now", n_ctx=options.ctx or 512)

    paste = "word " * 600
    repl, out = drive(f"{paste}\r\x03/ctx 8192\r{paste}\r/ctx\r", fake_loaded("never", n_ctx=512), load=load)
    assert "context window 8,192 tokens" in out and "big enough now" in out


def test_copy_over_osc_52_says_it_was_sent_not_copied(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no clipboard tool
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    repl, out = drive("code please\r/copy\r", fake_loaded("```sh\nls\n```"))
    assert "sent code block 1 to the terminal's clipboard (OSC 52)" in out and "set-clipboard on" in out
    assert "copied code block" not in out


def test_a_chinese_question_to_an_english_model_gets_one_hint():
    loaded = fake_loaded("I only speak English", "still English")
    loaded.spec.languages = ["en"]
    repl, out = drive("你好，请介绍一下北京\r再说一遍\r", loaded)
    assert out.count("is not a Chinese model") == 1 and "/model qwen2.5-1.5b-instruct" in out
    r = run("--max-tokens", "4", "北京是哪个国家的首都？")
    assert b"smollm2 is not a Chinese model" in r.stderr and b"-m qwen2.5-1.5b-instruct" in r.stderr
    r = run("--max-tokens", "4", "What is the capital of France?")
    assert b"Chinese" not in r.stderr


def test_pull_without_a_network_says_what_failed_and_how_to_use_a_mirror(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    message = one_line_error(run("pull", "owner/repo"))
    assert "the connection was refused" in message and "HF_ENDPOINT" in message and "Errno" not in message
