"""The promises at the edges, tried as an adversary would: nothing the user typed or
the model answered is lost (two windows, a failing disk, a closed terminal), and
nothing from outside (a server, a file, a session file, a model file) drives the
terminal, hangs the chat or makes it use memory without bound.

Each case reproduces a defect once found in chatterm; scripted servers (`FakeServer`)
and crafted files stand in for the hostile outside."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pexpect
import pytest

from chatterm import branches, sessions
from chatterm.conversation import context_window
from chatterm.conversation.templates import ChatTemplate
from chatterm.errors import ContextOverflowError, TemplateError
from chatterm.sessions import archive
from chatterm.ui import sanitize, terminal
from chatterm.ui.repl import choose_session
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import drive, one_line_error, raw_escapes, run, session_files
from tests.modelgen import tiny_model

# What a hostile party writes: an OSC title change with BEL, a screen clear, a CSI
# in its 8-bit (C1) form, a colour. None of it may reach the terminal raw.
EVIL = "evil\x1b]0;PWN\x07\x1b[2J\x9b31mred\x1b[31;1m"


def write_session(name: str, data: dict | bytes) -> Path:
    folder = sessions.sessions_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


def turn(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer, "finish": "eog"}]


def saved(name: str) -> list[str]:
    return [m["content"] for m in json.loads((sessions.sessions_dir() / f"{name}.json").read_text())["messages"]]


# ------------------------------------------------------------------ nothing lost
def two_chats(spawn, url: str, choice: str):
    """Chat a on session "work" (one turn asked), then chat b on it too, answering
    `choice` when told that a has it open."""
    a = spawn("--base-url", url, "--session", "work", threads=False)
    a.ask("alpha one", "noted")
    b = spawn("--base-url", url, "--session", "work", threads=False, ready="open in another chatterm")
    b.sendline(choice)
    return a, b


def test_a_second_chat_on_a_session_is_told_and_goes_on_in_a_copy(spawn):
    with FakeServer([event("noted"), DONE]) as fake:
        a, b = two_chats(spawn, fake.url, "c")
        b.expect("continuing in a copy: session work-2")
        b.expect("/help for commands")
        b.ask("bravo one", "noted")
        a.ask("alpha two", "noted")
        b.ask("bravo two", "noted")
        a.quit()
        b.quit()
    assert saved("work") == ["alpha one", "noted", "alpha two", "noted"]
    assert saved("work-2") == ["alpha one", "noted", "bravo one", "noted", "bravo two", "noted"]


def test_a_second_chat_can_read_a_session_without_writing_it(spawn):
    with FakeServer([event("noted"), DONE]) as fake:
        a, b = two_chats(spawn, fake.url, "r")
        b.expect(r"session work \(read-only\)")
        b.sendline("bravo")
        b.expect("read-only here")
        b.expect("› bravo")  # kept in the input, for /new or a copy
        b.sendcontrol("c")
        b.quit()
        a.ask("alpha two", "noted")
        a.quit()
    assert saved("work") == ["alpha one", "noted", "alpha two", "noted"]
    assert [p.stem for p in session_files()] == ["work"]


def test_a_session_is_the_file_it_was_opened_from(fake_model):
    work = write_session("work", {"name": "work", "messages": turn("q1", "a1")})
    (sessions.sessions_dir() / "work-backup.json").write_bytes(work.read_bytes())
    repl, _ = drive("q2\r", fake_model("a2"), session=choose_session("work-backup", False))
    assert repl.session.name == "work-backup"
    assert saved("work") == ["q1", "a1"]
    assert saved("work-backup") == ["q1", "a1", "q2", "a2"]


def test_a_file_written_by_someone_else_is_never_overwritten(fake_model):
    write_session("shared", {"messages": turn("q1", "a1")})
    session = choose_session("shared", False)
    write_session("shared", {"messages": turn("q1", "a1") + turn("theirs", "kept")})  # another program
    repl, out = drive("mine\r", fake_model("reply"), session=session)
    assert saved("shared") == ["q1", "a1", "theirs", "kept"]
    assert saved("shared-2") == ["q1", "a1", "mine", "reply"]
    assert "this chat goes on as shared-2" in out


def test_a_failed_save_keeps_the_turn_once_and_saves_it_later(fake_model, monkeypatch):
    folder = sessions.sessions_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the sessions folder should be")  # every save fails (as root, too)
    loaded = fake_model("first answer", "second answer")
    repl, out = drive("first question\r", loaded, session=sessions.Session(name="disk"))
    assert out.count("not saved:") == 1 and "the conversation is kept" in out
    assert [m["content"] for m in repl.conversation.messages if m["role"] != "system"] == [
        "first question", "first answer"]
    assert repl.prefill == ""  # the question is not put back in the input as well
    folder.unlink()
    repl.conversation.on_change()  # the next change saves it
    assert saved("disk")[-2:] == ["first question", "first answer"] and len(saved("disk")) == 3  # with the system prompt


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_reply_keeps_what_streamed(spawn, sig):
    words = [event(f"word{i} ") for i in range(400)]
    with FakeServer(words + [DONE], delay_s=0.02) as fake:
        child = spawn("--base-url", fake.url, "--session", "signalled", threads=False)
        child.sendline("tell me a long story")
        child.expect("word20")
        os.kill(child.pid, sig)
        child.expect(pexpect.EOF, timeout=15)  # after SIGHUP: as soon as it lets go of the terminal,
        child.wait()                            # so wait for it to finish saving and exit
    messages = json.loads((sessions.sessions_dir() / "signalled.json").read_text())["messages"]
    assert messages[0]["content"] == "tell me a long story"
    assert messages[1]["finish"] == "cancelled" and "word20" in messages[1]["content"]
    assert "word399" not in messages[1]["content"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_at_the_prompt_ends_the_chat_with_everything_saved(spawn, sig):
    with FakeServer([event("kept"), DONE]) as fake:
        child = spawn("--base-url", fake.url, "--session", "quiet", threads=False)
        child.ask("before the signal", "kept")
        os.kill(child.pid, sig)
        if sig == signal.SIGTERM:  # after SIGHUP there is no terminal to tell
            child.expect("session saved")
        child.expect(pexpect.EOF, timeout=15)
        child.wait()
    assert saved("quiet") == ["before the signal", "kept"]


def test_kill_9_at_any_moment_leaves_a_whole_session(spawn):
    """Held before the fixes, worth keeping: a save is whole or not there at all."""
    words = [event(f"w{i} ") for i in range(200)]
    with FakeServer(words + [DONE], delay_s=0.005) as fake:
        for attempt in range(4):
            child = spawn("--base-url", fake.url, "--session", "killed", threads=False)
            child.sendline(f"question {attempt}")
            child.expect("w1")
            time.sleep(0.05 * attempt)  # the kill lands at another point of the save each time: not a wait
            os.kill(child.pid, signal.SIGKILL)
            child.expect(pexpect.EOF)
            contents = saved("killed")  # parses: whole
            assert contents[-1] == f"question {attempt}" or contents[-2] == f"question {attempt}"
            assert all(f"question {k}" in contents for k in range(attempt + 1))


# ------------------------------------------------------------------ one way to the terminal
def test_the_console_and_the_streams_clean_whatever_is_written(capsys):
    import io

    out = io.StringIO()
    console = terminal.console(out, force_terminal=True, color_system="256")
    from rich.text import Text

    console.print(Text(EVIL, style="bold red"))  # rich's own codes stay, the outsider's do not
    assert not raw_escapes(out.getvalue()) and "\x1b[" in out.getvalue()
    stream = terminal.CleanStream(io.StringIO())
    print(EVIL, file=stream)
    assert not raw_escapes(stream._raw.getvalue()) and "␛]0;PWN" in stream._raw.getvalue()
    assert sanitize.clean("\ud83d\ude00 and \ud800") == "😀 and \ufffd"


def test_no_module_writes_to_the_terminal_around_the_choke_point():
    """Every console is `terminal.console`, every prompt_toolkit output goes through
    `terminal.prompt_output`, and raw writes are `terminal.control`'s alone."""
    package = Path(terminal.__file__).parents[1]
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "terminal.py" or "bench" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ("Console(", "create_output(", "sys.__stdout__", "sys.__stderr__", "os.write(1", "os.fdopen(1"):
            if needle in text:
                offenders.append(f"{path.relative_to(package)}: {needle}")
    assert offenders == []


def test_the_front_ends_reach_the_model_through_its_handle_only():
    """The UI holds a `loader.Model` and the conversation; never an engine or a backend."""
    package = Path(terminal.__file__).parent
    reaching = [f"{path.relative_to(package)}:{n}: {line.strip()}"
                for path in package.rglob("*.py")
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if re.search(r"\.(engine|backend)\b(?!_name)", line) and "session.engine" not in line]
    assert reaching == []


def test_the_front_ends_leave_the_session_to_its_conversation():
    """The conversation owns its session: nothing in the UI writes what the session
    keeps of it (messages, settings, the model), and no turn is worked out afterwards
    from the conversation's state (the `Turn` says what happened)."""
    package = Path(terminal.__file__).parent
    writing = [f"{path.relative_to(package)}:{n}: {line.strip()}"
               for path in package.rglob("*.py")
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               if re.search(r"session\.(messages|sampling|model|engine)\s*(\+?=[^=]|\.append)", line)
               or re.search(r"conversation\.last(_message)? is", line)]
    assert writing == []


def test_a_servers_model_id_is_shown_inert(spawn):
    with FakeServer([event("hi"), DONE], model_id=EVIL) as fake:
        child = spawn("--base-url", fake.url, threads=False)
        child.ask("hello", "hi")
        child.quit()
    assert not raw_escapes(child.before or "") and not raw_escapes(child.transcript)


def test_file_names_session_names_and_exports_are_shown_inert(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / f"{EVIL}.bin").write_bytes(b"\0\1binary")
    (folder / "ok.txt").write_text("fine")
    with FakeServer([event("read"), DONE]) as fake:
        r = run("--base-url", fake.url, "--no-save", "-f", str(folder), "what is here?")
    assert r.returncode == 0 and b"left out" in r.stderr and not raw_escapes(r.stderr + r.stdout)
    write_session(EVIL.replace("/", ""), {"model": EVIL, "messages": turn(EVIL, EVIL + "\x85")})
    write_session(f"broken{EVIL}", b"{not json")
    for args in (["sessions"], ["sessions", "--search", "evil"], ["export"], ["export", "-f", "kto"]):
        r = run(*args)
        assert r.returncode == 0, r.stderr
        assert not raw_escapes(r.stdout + r.stderr), (args, r.stdout, r.stderr)
        assert b"skipped broken" in r.stderr or "--search" in args  # a search parses only files with the text
    record = json.loads(run("export", "--unrated").stdout)
    assert record["messages"][1]["content"] == EVIL + "\x85"  # escaped in JSON, equal once parsed


def test_a_servers_error_messages_are_shown_inert(spawn):
    body = json.dumps({"error": {"message": EVIL}}).encode()
    with FakeServer(status=500, body=body, model_id="m") as fake:
        r = run("--base-url", fake.url, "hi")
        assert "server error (HTTP 500: evil" in one_line_error(r) and not raw_escapes(r.stderr)
        child = spawn("--base-url", fake.url, threads=False)
        child.ask("hi", "server error")
        child.quit()
    assert not raw_escapes(child.transcript)


def test_a_session_name_with_a_newline_stays_on_its_line():
    write_session("two\nlines", {"messages": turn("hello", "hi")})
    write_session("broken\nname", b"{")
    r = run("sessions")
    assert r.returncode == 0 and "two\\nlines " in r.stdout.decode() and "skipped broken\\nname.json" in r.stderr.decode()


@pytest.mark.parametrize("name", ["bad/name", "x y", "a\n", "../up", "é" * 101])
def test_an_invalid_session_name_is_refused_before_anything_is_asked(name):
    with FakeServer([event("answered"), DONE], model_id="m") as fake:
        r = run("--base-url", fake.url, "--session", name, stdin=b"what is 2+2?")
        asked = [q for q in fake.requests if q["path"].endswith("/chat/completions")]
    assert r.returncode == 1 and "session names use" in one_line_error(r) and b"answered" not in r.stdout
    assert asked == []


def test_gguf_metadata_is_shown_inert(tmp_path, default_gguf):
    model = tiny_model(tmp_path / "evil.gguf", default_gguf,
                       metadata={"general.name": EVIL, "general.size_label": EVIL,
                                 "tokenizer.chat_template": EVIL + "{{ messages[0].content }}"})
    r = run("show", str(model))
    assert r.returncode == 0, r.stderr
    assert not raw_escapes(r.stdout + r.stderr) and b"PWN" in r.stdout


# ------------------------------------------------------------------ unicode at every boundary
def test_a_surrogate_pair_split_across_events_is_one_emoji():
    halves = [b'data: {"choices": [{"delta": {"content": "smile \\ud83d"}}]}\n\n',
              b'data: {"choices": [{"delta": {"content": "\\ude00!"}}]}\n\n',
              b'data: {"choices": [{"delta": {"content": " lone \\udc00"}, "finish_reason": "stop"}]}\n\n', DONE]
    with FakeServer(halves) as fake:
        r = run("--base-url", fake.url, "hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "smile 😀! lone \ufffd\n"


def test_a_lone_surrogate_in_a_session_file_is_repaired_with_one_line(fake_model):
    write_session("odd", b'{"messages": [{"role": "user", "content": "bad \\ud800 half"},'
                         b' {"role": "assistant", "content": "ok"}]}')
    r = run("sessions")
    assert r.returncode == 0 and b"bad \xef\xbf\xbd half" in r.stdout
    assert run("export").returncode == 0
    repl, out = drive("/load odd\rmore\r", fake_model("fine"))
    assert "broken characters" in out and repl.session.name == "odd"
    assert saved("odd") == ["bad \ufffd half", "ok", "more", "fine"]


def test_a_huge_integer_makes_its_file_skipped_not_the_listing():
    write_session("good", {"messages": turn("hello", "hi")})
    write_session("huge", b'{"messages": [], "created": ' + b"9" * 5000 + b"}")
    for args in (["sessions"], ["sessions", "--search", "9999"], ["export"]):
        r = run(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert b"skipped huge.json" in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.parametrize("field", [b'"version": "abc"', b'"version": [1]', b'"version": true',
                                   b'"adapters": [{"name": "x", "sha256": "y", "scale": ' + b"9" * 400 + b"}]",
                                   b'"adapters": [{"name": "x", "sha256": "y", "scale": NaN}]',
                                   b'"rating": {"a": 1}', b'"thinking": 5'])
def test_a_malformed_field_skips_its_file_and_opens_with_it_named(fake_model, field):
    """Listing, search and export go on without it (one line names it, valid JSON
    Lines out, no NaN); opening it leaves the bad field out and says so."""
    write_session("good", {"messages": turn("hello", "hi")})
    write_session("bad", b'{"messages": [{"role": "user", "content": "hello"}, '
                         b'{"role": "assistant", "content": "hi", ' + field + b"}]}")
    for args in (["sessions"], ["sessions", "--search", "hello"], ["export"], ["export", "--format", "dpo"]):
        r = run(*args)
        assert r.returncode == 0 and b"Traceback" not in r.stderr and b"unexpected" not in r.stderr, (args, r.stderr)
        assert r.stderr.count(b"skipped bad.json: corrupt (an invalid ") == 1, (args, r.stderr)
    for line in run("export").stdout.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the export"))
    repl, out = drive("/load bad\rmore\r", fake_model("fine"))
    assert "left out what was invalid: an invalid" in out and "on message 2" in out
    assert saved("bad") == ["hello", "hi", "more", "fine"]


def test_a_name_with_a_space_resumes(fake_model):
    write_session("my chat", {"messages": turn("spaced", "out")})
    assert b"my chat" in run("sessions").stdout
    assert choose_session(None, resume=True).name == "my chat"
    repl, out = drive("/load my chat\r", fake_model())
    assert repl.session.name == "my chat" and "spaced" in out


# ------------------------------------------------------------------ bounded input
def test_history_that_cannot_be_written_is_one_line(fake_model):
    from chatterm import paths

    history = paths.data_dir() / "history"
    history.mkdir(parents=True)  # a folder where the history file should be
    repl, out = drive("one\rtwo\r", fake_model("a", "b"))
    assert [m["content"] for m in repl.conversation.messages if m["role"] != "system"] == ["one", "a", "two", "b"]
    assert out.count("history file") == 1 and "Unhandled" not in out


def test_a_history_file_removed_mid_chat_is_one_line(spawn):
    from chatterm import paths

    with FakeServer([event("ok"), DONE]) as fake:
        child = spawn("--base-url", fake.url, threads=False)
        child.ask("one", "ok")
        history = paths.data_dir() / "history"
        history.unlink()
        history.mkdir()
        child.ask("two", "ok")
        child.ask("three", "ok")
        child.quit()
    assert child.transcript.count("cannot write the history file") == 1
    assert "Unhandled exception" not in child.transcript


@pytest.mark.parametrize("template", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'ten chars.' }}{% endfor %}{% endfor %}",
    "{{ 'x' * 1000000000 }}",
])
def test_a_hostile_template_is_stopped(template):
    start = time.monotonic()
    with pytest.raises(TemplateError, match="stopped|budget"):
        ChatTemplate(template, name="evil").render([{"role": "user", "content": "hi"}])
    assert time.monotonic() - start < 10
    assert ChatTemplate("{{ messages[0].content }}", name="fine").render([{"role": "user", "content": "hi"}]) == "hi"


def test_the_chat_answers_keys_while_a_hostile_template_renders(spawn, tmp_path, default_gguf):
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    model = tiny_model(tmp_path / "loops.gguf", default_gguf, metadata={"tokenizer.chat_template": loops})
    child = spawn("-m", str(model), "--engine", "llama.cpp", "--max-tokens", "4")
    child.sendline("hello")
    child.expect("chat template .* was stopped", timeout=20)
    child.expect("› hello")  # not sent: back in the input
    start = time.monotonic()
    child.sendcontrol("c")
    child.sendline("/exit")
    child.expect(pexpect.EOF, timeout=15)
    assert time.monotonic() - start < 10


def test_fifos_devices_and_loops_are_never_opened_to_hang(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "notes.txt").write_text("notes")
    os.mkfifo(folder / "fifo")
    (folder / "zero").symlink_to("/dev/zero")
    (folder / "loop").symlink_to(folder / "loop")
    with FakeServer([event("read"), DONE]) as fake:
        r = run("--base-url", fake.url, "-f", str(folder), "what is here?", timeout=30)
        assert r.returncode == 0, r.stderr
        err = r.stderr.decode()
        assert "fifo (a FIFO (named pipe), not read)" in err and "zero (a device, not read)" in err
        assert "loop (a symlink loop, not read)" in err
        assert "notes" in fake.requests[-1]["json"]["messages"][-1]["content"]
        for name, why in (("fifo", "a FIFO"), ("loop", "a symlink loop"), ("zero", "a device")):
            assert why in one_line_error(run("--base-url", fake.url, "-f", str(folder / name), "q", timeout=30))


def test_fifos_in_place_of_config_models_sessions_and_history_are_refused(tmp_path, fake_model):
    from chatterm import paths

    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    assert "a FIFO" in one_line_error(run("-m", str(fifo), "hi", timeout=30))
    config = paths.user_models_toml()
    config.parent.mkdir(parents=True)
    os.mkfifo(config)
    assert "a FIFO" in one_line_error(run("hi", timeout=30))
    config.unlink()
    folder = sessions.sessions_dir()
    folder.mkdir(parents=True)
    os.mkfifo(folder / "pipe.json")
    write_session("fine", {"messages": turn("findme", "here")})
    for args in (["sessions"], ["sessions", "--search", "findme"], ["export"]):
        r = run(*args, timeout=30)
        assert r.returncode == 0 and b"skipped pipe.json: a FIFO" in r.stderr, (args, r.stderr)
    (folder / "pipe.json").unlink()
    os.mkfifo(paths.data_dir() / "history")
    repl, out = drive("one\r", fake_model("a"))
    assert out.count("history file") == 1 and "a FIFO" in out


def test_load_of_a_device_is_one_line(fake_model):
    repl, out = drive("/load /dev/zero\r/load /dev/null\r", fake_model())
    assert out.count("error:") == 2 and "a device" in out


def peak_rss_kb(args: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """The real program run by a fresh Python, and the peak memory of its largest process."""
    probe = ("import resource, subprocess, sys, json; "
             "r = subprocess.run(sys.argv[1:], capture_output=True); "
             "print(json.dumps([r.returncode, r.stderr.decode(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    r = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "chatterm", *args],
                       capture_output=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    code, err, peak = json.loads(r.stdout)
    return subprocess.CompletedProcess(args, code, b"", err.encode()), peak


def test_a_gzip_bomb_is_refused_within_bounded_memory():
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = b"\0" * (1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()  # 256 MiB inflated
    with FakeServer([event("x"), DONE], models_body=(bomb, {"Content-Encoding": "gzip",
                                                            "Content-Type": "application/json"})) as fake:
        r, peak_kb = peak_rss_kb(["--base-url", fake.url, "hi"])
    assert "larger than 16 MiB" in one_line_error(r)
    assert peak_kb < 200_000  # 256 MiB were sent inflated; about 60 MB is the program itself


def test_an_endless_event_is_cut_off():
    lines = (b"data: " + b"x" * 60 + b"\n") * 100_000  # 6.7 MB of short data lines, one event
    with FakeServer([event("start"), lines, b"\n", DONE]) as fake:
        r, peak_kb = peak_rss_kb(["--base-url", fake.url, "hi"])
    assert "an event larger than 4 MiB" in one_line_error(r)
    assert peak_kb < 200_000


def test_error_null_in_events_is_no_error():
    chunks = [b'data: {"error": null, "choices": [{"delta": {"content": "all "}}]}\n\n',
              b'data: {"error": null, "choices": [{"delta": {"content": "good"}, "finish_reason": "stop"}]}\n\n',
              DONE]
    with FakeServer(chunks) as fake:
        r = run("--base-url", fake.url, "hi")
    assert r.returncode == 0 and r.stdout == b"all good\n", r.stderr


# ------------------------------------------------------------------ linear cost
def _one_exchange_at_a_time(messages, measure, n_ctx, reserve):
    """The rule `fit` keeps, as it was first written: drop the oldest exchange, measure
    again, until it fits."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    rest, dropped = messages[len(system):], 0
    while True:
        size, prompt = measure(system + rest)
        if size + reserve <= n_ctx or len(rest) <= 1 and size < n_ctx:
            return prompt, dropped
        if len(rest) <= 1:
            raise ContextOverflowError("too large")
        cut = 2 if len(rest) > 2 and rest[0]["role"] == "user" else 1
        rest, dropped = rest[cut:], dropped + cut


@pytest.mark.parametrize("seed", range(20))
def test_fitting_keeps_the_same_turns_and_measures_a_logarithmic_number_of_times(seed):
    import random

    rng = random.Random(seed)
    messages = [{"role": "system", "content": "s" * rng.randint(0, 40)}] if seed % 2 else []
    for i in range(rng.randint(1, 600)):
        messages.append({"role": ("user", "assistant")[i % 2] if rng.random() > 0.05 else "user",
                         "content": "w" * rng.randint(1, 300)})
    calls = []

    def measure(kept):
        calls.append(len(kept))
        size = sum(len(m["content"]) // 4 + 3 for m in kept)
        return size, [m["content"] for m in kept]

    n_ctx = rng.choice([256, 2048, 8192])
    try:
        expected = _one_exchange_at_a_time(messages, measure, n_ctx, 64)
    except ContextOverflowError:
        with pytest.raises(ContextOverflowError):
            context_window.fit(messages, measure, n_ctx, 64)
        return
    calls.clear()
    assert context_window.fit(messages, measure, n_ctx, 64) == expected
    assert len(calls) <= 2 * max(1, len(messages)).bit_length() + 3
    # Apart from the whole history (measured first when it is short), no prompt measured
    # is much longer than the one kept: the cost does not grow with the history.
    kept = len(expected[0])
    assert all(c <= 2 * kept + 4 for c in calls if c != len(messages)), (calls, kept)


def test_walking_a_long_session_copies_nothing_per_message():
    path = [m for i in range(20000) for m in turn(f"q{i}", f"a{i}")]
    older = [{"role": "assistant", "content": "older"}, {"role": "user", "content": "after older"}]
    path[-1] = {**path[-1], "alternatives": [older], "version": 2}
    points = list(branches.walk(path))
    assert len(points) == len(path) + 1
    history, firsts, current = points[-2]  # the last reply: two versions, the second current
    assert len(history) == len(path) - 1 and history[-1]["content"] == "q19999"
    assert history.role_count("user") == 20000 and current == 2
    assert [m["content"] for m in firsts] == ["older", "a19999"]
    off_path, firsts, current = points[-1]  # the question that followed the older reply
    assert list(off_path)[-2:] == [path[-2], older[0]] and len(off_path) == len(path) and current == 0
    assert off_path.role_count("assistant") == 20000 and firsts == [older[1]]


def test_search_numbers_hits_in_long_sessions():
    messages = [m for i in range(3000) for m in turn(f"question {i}", f"answer {i}")]
    write_session("long", {"messages": messages})
    hits, _ = archive.partition(archive.search("answer 2999", archive.files()))
    assert [h.where for h in hits] == ["reply 3000"]


def test_a_long_session_shows_its_last_turns_when_resumed(fake_model):
    write_session("long", {"messages": [m for i in range(5000) for m in turn(f"q{i}", f"a{i}")]})
    repl, out = drive("", fake_model(), session=choose_session("long", False))
    repl.replay()
    out = repl.console.file.getvalue()
    assert "9,980 earlier messages" in out and "q4999" in out and "q10\n" not in out
