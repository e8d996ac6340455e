"""What you approve is what runs: the tool, MCP and schema surfaces tried as an
adversary would. A call's arguments are shown whole and by one rule (every character
that does not print is an escape), what runs is exactly what was shown, a tool's
processes end with it, every long step ends at Ctrl-C and the signals, and nothing
from outside grows without bound. Each case reproduces a defect once found."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pexpect
import pytest

from chatterm.conversation.core import head_and_tail
from chatterm.conversation.turn import Notice
from chatterm.engines.call_grammar import REPEAT_CAP, SchemaTooLarge, check_bounds
from chatterm.loader import RunOptions
from chatterm.structured import validate
from chatterm.tools import builtin, mcp_log, runner
from chatterm.tools.builtin import BUILTIN, Tool
from chatterm.tools.calls import ToolCall
from chatterm.tools.mcp_config import ServerConfig
from chatterm.tools.mcp_hub import McpHub, tool_name
from chatterm.tools.toolbox import Toolbox
from chatterm.ui import sanitize, tool_views
from tests.fakes import fake_loaded
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import drive, one_line_error, run
from tests.scripted_engine import write_script

SERVER = str(Path(__file__).with_name("mcp_server.py"))
never = lambda: False  # noqa: E731

# Characters that print as nothing, or move what follows: controls, zero-width, bidi,
# tags, odd spaces, separators, a variation selector, a lone surrogate.
HIDDEN = ["\r", "\b", "\a", "\v", "\f", "\x1b", "\x00", "\x7f", "\x85", "\x9b", "\u200b", "\u200d", "\u2060",
          "\ufeff", "\u202e", "\u2066", "\u2069", "\U000e0041", "\U000e007f", "\u00a0", "\u3000", "\u2028",
          "\ufe0f", "\u180e", "\u00ad", "\U000f0001", "\ud800"]


def call_text(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def chat(keys: str, *replies: str, tools: str = "run", preapproved: tuple[str, ...] = ()) -> str:
    """The REPL (a fake model answering `replies`) fed `keys`: what it printed."""
    options = RunOptions(tools=tuple(tools.split(",")), preapproved=preapproved)
    _, out = drive(keys, fake_loaded(*replies, sampling={"max_tokens": 4000}), options=options)
    return out


def shown_call(out: str, name: str) -> str:
    """The arguments as the approval showed them (up to the note or the next step)."""
    block = out.split(f"▸ the model asks to call {name}:\n", 1)[1]
    lines = []
    for line in block.split("\n"):
        if line.startswith(("  (", "  running", "  …", "▸ ")):
            break
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------ one rule for what is shown
def test_every_hidden_character_is_an_escape_that_reads_back_exactly():
    rng = random.Random(30)
    alphabet = HIDDEN + ["\\", "\\r", "\\u200b", "\\x41", "a", "b", " ", "\n", "中", "文"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        shown = sanitize.visible(text)
        assert sanitize.hidden_count(shown) == 0, repr(shown)  # nothing left that does not print
        assert sanitize.unescape(shown) == text  # and nothing lost or changed: it reads back
    assert sanitize.visible("plain code\n\tprint('中文 ok')") == "plain code\n\tprint('中文 ok')"


@pytest.mark.parametrize("hidden, escape", [("\r", "\\r"), ("\b", "\\b"), ("\a", "\\a"), ("\v", "\\v"),
                                            ("\f", "\\f"), ("\u200b", "\\u200b"), ("\u202e", "\\u202e"),
                                            ("\u2066", "\\u2066"), ("\U000e0041", "\\U000e0041")])
def test_a_hidden_part_of_a_call_is_shown_not_swallowed_and_declined_never_runs(tmp_path, monkeypatch, hidden,
                                                                                  escape):
    monkeypatch.chdir(tmp_path)
    code = f'print("hello")  # comment{hidden}import os; os.system("touch PWNED")'
    out = chat("greet me\rn\r", call_text("python", code=code), "ok then", tools="python")
    shown = shown_call(out, "python")
    assert f"# comment{escape}import os; os.system(\"touch PWNED\")" in shown
    assert "1 character that does not print is shown as escapes" in out
    assert not (tmp_path / "PWNED").exists()


def test_what_runs_is_exactly_what_was_shown_for_generated_hostile_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(4)
    # No NUL and no lone surrogate (a command line cannot hold them), no tab (shown as
    # the terminal's spaces), no "(" (the test's own end marker).
    alphabet = [c for c in HIDDEN if c not in ("\x00", "\ud800")] + ["\\", "\\r", "a", "z", " ", "中", "'", '"']
    for n in range(6):
        payload = "".join(rng.choice(alphabet) for _ in range(12)) + f" #{n}"
        command = f"cat > ran.txt <<'END_OF_PAYLOAD'\n{payload}\nEND_OF_PAYLOAD"
        out = chat("save it\ry\r", call_text("run", command=command), "saved")
        assert sanitize.unescape(shown_call(out, "run")) == command
        assert (tmp_path / "ran.txt").read_bytes() == (payload + "\n").encode()


def test_every_argument_is_shown_beside_the_main_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = chat("wait\rn\r", call_text("run", command="sleep 1", timeout=3600), "fine")
    assert "sleep 1" in out and "timeout = 3600" in out
    # An MCP tool's extra key: shown, with its hidden characters escaped.
    tool = Tool("srv__say", "say", {"type": "object", "properties": {"text": {"type": "string"}}}, lambda a, c: None,
                headline="text")
    call = ToolCall("srv__say", {"text": "hello", "timeout": "<any\u200bthing>", "x": {"deep": [1]}})
    shown: list[str] = []
    assert tool_views.ask(call, tool, shown.append, shown.append, lambda q: "n", lambda t: None) == "n"
    text = "\n".join(shown)
    assert 'timeout = "<any\\u200bthing>"' in text and 'x = {"deep": [1]}' in text


def test_tool_n_shows_a_past_call_by_the_same_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = chat("go\rn\r/tool 1\r", call_text("run", command="echo hi\rrm -rf x"), "ok")
    after = out.split("▸ call 1:")[1]
    assert "echo hi\\rrm -rf x" in after


def test_the_collapsed_line_of_a_call_shows_hidden_characters_too():
    assert "echo hi\\rrm -rf x" in tool_views.collapsed("run", {"command": "echo hi\rrm -rf x"}, "exit 0", 1,
                                                         "command")


# ------------------------------------------------------------------ write_file and links
@pytest.fixture
def linked(tmp_path, monkeypatch):
    """A project folder with a link to a file outside and a link to a folder outside."""
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "target.txt").write_text("old\n")
    (project / "lnk").symlink_to("../outside/target.txt")
    (project / "ldir").symlink_to("../outside")
    monkeypatch.chdir(project)
    return project, outside


def test_a_write_through_a_file_link_shows_and_writes_the_real_file(linked):
    project, outside = linked
    preview = builtin.write_preview({"path": "lnk", "content": "new\n"})
    assert f"writes {outside / 'target.txt'}" in preview and "outside the working folder" in preview
    assert "-old" in preview and "+new" in preview
    done = builtin._write_file({"path": "lnk", "content": "new\n"}, never)
    assert done.ok and (outside / "target.txt").read_text() == "new\n"
    assert (project / "lnk").is_symlink()  # the link stays a link


def test_a_new_file_through_a_folder_link_is_said_to_leave_the_folder(linked):
    project, outside = linked
    out = chat("write\rn\r", call_text("write_file", path="ldir/new.txt", content="x\n"), "ok", tools="write_file")
    assert f"new file {outside / 'new.txt'}" in out and "outside the working folder" in out
    assert not (outside / "new.txt").exists()
    inside = builtin.write_preview({"path": "sub/new.txt", "content": "x\n"})
    assert inside == "new file sub/new.txt, 1 lines"  # a plain path inside: nothing to warn of


def test_write_file_on_a_folder_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "ro").mkdir()
    for path in ("folder", "ldir" if False else "folder/"):
        done = builtin._write_file({"path": path, "content": "x"}, never)
        assert not done.ok and "folder" in done.text
    os.chmod(tmp_path / "ro", 0o500)
    try:
        done = builtin._write_file({"path": "ro/file.txt", "content": "x"}, never)
        assert not done.ok or os.geteuid() == 0
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_tool_given_arguments_it_cannot_take_is_an_error_result_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    box = Toolbox(BUILTIN.values(), preapproved=("all",))
    for name, arguments in (("run", {"command": "echo a\x00b"}), ("run", {"command": "echo \ud800"}),
                            ("write_file", {"path": "s.txt", "content": "\ud800"}),
                            ("write_file", {"path": "a\x00b", "content": "x"}),
                            ("read_file", {"path": "\x00"})):
        call = ToolCall(name, arguments)
        box.decide_beforehand(call)
        result = box.run(call, never)
        assert isinstance(result.text, str)


# ------------------------------------------------------------------ processes end with the call
def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def live(word: str) -> list[int]:
    """The live processes whose command line holds `word` (the program's own pids may
    be its PID namespace's, not the machine's)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if word.encode() in f.read() and alive(int(name)):
                    found.append(int(name))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.parametrize("command", ["setsid nohup sleep 611 > /dev/null 2>&1 & echo $! > pid",
                                     "(setsid sh -c 'sleep 612 & echo $! > pid; wait' &) ; sleep 0.2",
                                     "sleep 613 & echo $! > pid"])
def test_what_a_call_leaves_running_is_ended_and_said(tmp_path, command):
    outcome = runner.run_process(["bash", "-c", command], cwd=str(tmp_path))
    pid = int((tmp_path / "pid").read_text())
    assert not live(re.search(r"sleep (\d+)", command).group())
    assert outcome.exit_code == 0 and re.search(r"ended \d+ process(es)? it left running", outcome.summary)
    assert f"{pid} " in outcome.for_model()


def test_a_call_stopped_or_timed_out_ends_its_daemons_too(tmp_path):
    outcome = runner.run_process(["bash", "-c", "setsid sleep 614 & echo $! > pid; sleep 60"], cwd=str(tmp_path),
                                 timeout_s=1)
    assert outcome.timed_out and not live("sleep 614")
    flag = threading.Event()
    threading.Timer(0.5, flag.set).start()
    outcome = runner.run_process(["bash", "-c", "(setsid sleep 615 & echo $! > pid2) ; sleep 60"], cwd=str(tmp_path),
                                 cancelled=flag.is_set)
    assert outcome.cancelled and not live("sleep 615")


@pytest.mark.parametrize("attack", ["kill -9 $PPID", "kill -STOP $PPID", "kill -9 -- -$(ps -o pgid= $PPID)"])
def test_a_call_that_attacks_its_parent_still_ends_its_daemons(tmp_path, attack):
    outcome = runner.run_process(["bash", "-c", f"setsid sleep 616 & sleep 0.1; {attack}; sleep 0.2; echo after"],
                                 cwd=str(tmp_path), timeout_s=10)
    assert not live("sleep 616")
    assert "after" in outcome.output or outcome.exit_code is not None


def limits_file(**values: int) -> None:
    from chatterm.tools.limits import tools_toml

    tools_toml().parent.mkdir(parents=True, exist_ok=True)
    tools_toml().write_text("[limits]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))


def test_a_fork_bomb_stops_at_the_limit_and_leaves_nothing(tmp_path):
    """setsid children forking until they cannot: the call ends at its limit, every
    process with it, and the chat can still start threads."""
    limits_file(processes=48)
    bomb = ("import os, time\nn = 0\nwhile n < 5000:\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        os.setsid()\n        time.sleep(617)\n"
            "        os._exit(0)\n    n += 1\nprint('forked', n)\n")
    outcome = runner.run_python(bomb, timeout_s=30)
    forked = int(re.search(r"forked (\d+)", outcome.output).group(1))
    assert forked < 48 and not outcome.timed_out
    assert not live("chatterm-snippet")
    started = threading.Thread(target=lambda: None)
    started.start()
    started.join()


@pytest.mark.parametrize("limit, program, said", [
    ({"memory_mb": 256}, "x = bytearray(2 << 30)", "MemoryError"),
    ({"cpu_s": 1}, "while True: pass", "exit -24"),
    ({"file_mb": 1}, "open('big', 'wb').write(b'x' * (4 << 20))", "File too large"),
])
def test_a_call_keeps_to_its_memory_cpu_and_file_limits(tmp_path, monkeypatch, limit, program, said):
    monkeypatch.chdir(tmp_path)
    limits_file(**limit)
    outcome = runner.run_python(program, timeout_s=30)
    assert said in outcome.output + outcome.summary and not outcome.timed_out, outcome.output


@pytest.mark.parametrize("body, problem", [
    ("[limits]\nprocesses = 2\n", "processes must be an integer of tasks from 8"),
    ("[limits]\ncpu_s = " + "9" * 400 + "\n", "cpu_s must be an integer of CPU seconds from 1 to 2,147,483,648, "
                                             "not 99999999… (400 digits)"),
    ("[limits]\nmemory_mb = nan\n", "memory_mb must be an integer"),
    ("[limits]\nthreads = 1\n", "unknown key 'threads'"),
])
def test_bad_limits_are_one_line_naming_file_and_key(body, problem):
    from chatterm.errors import ConfigError
    from chatterm.tools.limits import limits, tools_toml

    tools_toml().parent.mkdir(parents=True, exist_ok=True)
    tools_toml().write_text(body)
    with pytest.raises(ConfigError) as e:
        limits()
    assert str(tools_toml()) in str(e.value) and problem in str(e.value)


def test_the_runner_waits_for_the_program_not_its_output(tmp_path):
    outcome = runner.run_process(["bash", "-c", "exec >/dev/null 2>&1; sleep 1; touch DONE; exit 4"],
                                 cwd=str(tmp_path))
    assert outcome.exit_code == 4 and (tmp_path / "DONE").exists()
    codes = {runner.run_process(["touch", str(tmp_path / f"t{i}")]).exit_code for i in range(20)}
    assert codes == {0}
    assert runner.run_process(["bash", "-c", "kill -9 $$"]).exit_code == -9
    assert runner.run_process(["no-such-program-xyz"]).exit_code == 127


# ------------------------------------------------------------------ MCP: one name, one tool
@pytest.fixture
def hub(tmp_path):
    made = []

    def start(*servers: ServerConfig) -> McpHub:
        toolbox = Toolbox()

        def keep(added, removed):
            toolbox.disable(removed)
            toolbox.enable(added)
        h = McpHub(list(servers), keep)
        h.toolbox = toolbox
        h.start()
        h.wait_settled()
        made.append(h)
        return h
    yield start
    for h in made:
        h.close()


def server(tmp_path: Path, name: str, *extra: str) -> ServerConfig:
    return ServerConfig(name, command=sys.executable, args=[SERVER, *extra, f"{tmp_path}/{name}"])


def test_tool_names_of_two_servers_never_meet():
    taken: dict = {}
    pairs = [("a", "b__c"), ("a__b", "c"), ("a.b", "x"), ("a b", "x"), ("a_b", "x"), ("s" * 40, "t" * 40),
             ("s" * 40, "t" * 40 + "u"), ("中文", "工具"), ("x", "y" * 100)]
    for pair in pairs:
        name = tool_name(*pair, taken)
        assert name not in taken and len(name) <= 64
        taken[name] = pair
    assert tool_name("a", "b__c", taken) == "a__b__c"  # the same pair: the same name again


def test_colliding_mcp_tools_each_reach_their_own_server_and_need_their_own_yes(hub, tmp_path):
    h = hub(server(tmp_path, "a", "tools=b__c"), server(tmp_path, "a__b", "tools=c"))
    box = h.toolbox
    names = [t.name for s in h.states.values() for t in s.tools]
    assert len(names) == len(set(names)) and set(names) <= set(box.tools)
    first = next(t for t in h.states["a"].tools if t.name == "a__b__c")
    second = next(t for t in h.states["a__b"].tools if t.description == "the tool c")
    assert first.name != second.name
    assert first.run({}, never).text == f"b__c of {tmp_path}/a"
    assert second.run({}, never).text == f"c of {tmp_path}/a__b"
    call = ToolCall(first.name, {})
    box.allow_always(call)
    other = ToolCall(second.name, {})
    box.decide_beforehand(other)
    assert other.decision is None  # "always" for one is never a yes for the other
    h.restart("a")
    h.wait_settled()
    again = ToolCall(first.name, {})
    box.decide_beforehand(again)
    assert again.decision is None  # a restarted server's tools are asked for again


def test_a_tool_listed_twice_or_with_an_unbounded_schema_is_taken_once_or_left_out(hub, tmp_path):
    h = hub(server(tmp_path, "dup", "tools=same,same"))
    names = [t.name for t in h.states["dup"].tools]
    assert names.count("dup__same") == 1


# ------------------------------------------------------------------ MCP: processes, log, stopping
def running(marker: str) -> bool:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return any(pid != str(os.getpid()) for pid in out)


def test_a_servers_double_forked_daemon_ends_with_the_chat(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    h = McpHub([server(tmp_path, "d", f"daemon={pidfile}")], lambda a, r: None)
    h.start()
    h.wait_settled()
    assert h.states["d"].status == "running"
    pid = int(pidfile.read_text())
    assert alive(pid)
    h.close()
    assert not alive(pid)


def test_a_server_that_never_answers_initialize_does_not_hold_up_the_exit(tmp_path):
    marker = f"{tmp_path}/mute"
    mute = ServerConfig("mute", command=sys.executable, args=["-c", "import time; time.sleep(600)", marker])
    h = McpHub([mute], lambda a, r: None)
    h.start()
    deadline = time.monotonic() + 20
    while not running(marker) and time.monotonic() < deadline:  # up, and silent
        threading.Event().wait(0.05)
    told: list[str] = []
    start = time.monotonic()
    h.close(told.append)
    assert time.monotonic() - start < 3.0  # not the SDK's seconds of grace, nor the 30 s start limit
    assert told and "mute" in told[0]
    assert not running(marker)


def test_the_mcp_log_stays_small_whatever_a_server_writes(tmp_path):
    path = tmp_path / "mcp.log"
    log = mcp_log.CappedLog(path)
    err = log.stderr_for("noisy")
    proc = subprocess.Popen([sys.executable, "-c", "import sys\nfor _ in range(40 << 10): "
                             "sys.stderr.write('e' * 1023 + '\\n')"], stderr=err)
    err.close()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "dropped" not in path.read_text(errors="replace"):
        threading.Event().wait(0.05)
    assert path.stat().st_size <= mcp_log.FILE_CAP
    assert path.with_name("mcp.log.1").stat().st_size <= mcp_log.FILE_CAP
    assert "[noisy] more than 4 MiB on stderr: the rest is dropped" in path.read_text()


def test_a_server_flooding_stderr_reaches_the_log_capped(hub, tmp_path, private_dirs):
    h = hub(server(tmp_path, "flood", "stderr=12"))
    assert h.states["flood"].status == "running"
    logs = list(Path(os.environ["XDG_STATE_HOME"]).rglob("mcp.log*"))
    assert logs and all(p.stat().st_size <= mcp_log.FILE_CAP for p in logs)


# ------------------------------------------------------------------ schemas: bounded
@pytest.mark.parametrize("schema", ['{"type": "string", "minLength": 1e9}', '{"type": "array", "minItems": 100000000}',
                                    '{"type": "object", "properties": {"a": {"type": "string", "maxLength": 1e12}}}',
                                    '{"type": "string", "pattern": "^a{99999999}$"}'])
def test_a_schema_that_cannot_be_bounded_is_one_line(schema):
    r = run("--schema", schema, "-m", "smollm2", stdin=b"hi")
    line = one_line_error(r)
    assert f"{REPEAT_CAP:,}" in line


def test_a_pattern_that_backtracks_for_ever_is_not_checked_for_ever():
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    start = time.monotonic()
    said = validate.answer_problem(json.dumps({"s": "a" * 40 + "!"}), schema)
    assert time.monotonic() - start < validate.CHECK_S + 2
    assert "took more than" in said
    assert validate.answer_problem(json.dumps({"s": "aaaa"}), schema) == ""
    assert "does not match" in validate.answer_problem(json.dumps({"s": "b"}), schema)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    assert "stopped" in validate.answer_problem(json.dumps({"s": "a" * 40 + "!"}), schema, stop.is_set)
    assert time.monotonic() - start < 1.5


def test_an_mcp_tools_unbounded_schema_is_refused_before_any_grammar():
    for schema in ({"type": "object", "properties": {"a": {"type": "string", "minLength": 10 ** 9}}},
                   {"type": "object", "properties": {"a": {"type": "array", "items": {"minItems": 1e8}}}}):
        with pytest.raises(SchemaTooLarge):
            check_bounds(schema)
    check_bounds({"type": "object", "properties": {"a": {"type": "string", "maxLength": 200}}})


# ------------------------------------------------------------------ turns that must end
def looping_conversation(replies: list[str], n_ctx: int = 4096, tools=("run",)):
    from chatterm.loader import conversation

    loaded = fake_loaded(*replies, n_ctx=n_ctx, sampling={"max_tokens": 400})
    conv = conversation(loaded, RunOptions(tools=tools, preapproved=("all",)))
    return conv, loaded.backend.engine


def test_a_model_that_calls_past_the_limit_ends_the_turn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = [call_text("run", command=f"echo {i}") for i in range(40)]
    conv, engine = looping_conversation(calls)
    events = list(conv.send("go"))
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert any("the turn ends here" in n for n in notices)
    assert len(engine.prompts) <= conv.toolbox.limit + 2  # not hundreds of requests


@pytest.mark.parametrize("system", [None, "SYS"])
def test_compaction_of_turns_full_of_tool_calls_ends(private_dirs, system):
    from chatterm.loader import conversation

    loaded = fake_loaded("the summary", n_ctx=700, system=system, sampling={"max_tokens": 40})
    conv = conversation(loaded, RunOptions(tools=("run",)))
    messages = conv.messages
    messages.append({"role": "user", "content": "start " + "word " * 30})
    for i in range(12):  # one question, then calls and results only: no question between
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "run", "arguments": {"command": "ls"}}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "name": "run", "content": "file " * 60})
    messages.extend([{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"},
                     {"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"}])
    done: list = []
    worker = threading.Thread(target=lambda: done.append(conv.compact()), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert done and done[0] > 0  # it ended, and summarized


def test_compaction_stopped_adds_no_half_summary(private_dirs):
    from chatterm.errors import ChattermError
    from chatterm.loader import conversation

    loaded = fake_loaded("a summary that would be cut", sampling={"max_tokens": 40})
    conv = conversation(loaded, RunOptions())
    for i in range(4):
        conv.messages.extend([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])
    before = list(conv.messages)
    with pytest.raises(ChattermError, match="stopped"):
        conv.compact(cancelled=lambda: True)
    assert conv.messages == before


def test_a_slow_compact_ends_at_sigterm_within_a_second(spawn, tmp_path):
    env = write_script(tmp_path / "script.json", "a1", "a2", "a3", {"text": "summary", "words": 400,
                                                                     "delay_s": 0.05})
    child = spawn(env=env)
    for q in ("q1", "q2", "q3"):
        child.ask(q, "a\\d")
    child.sendline("/compact")
    child.expect("summarizing")
    start = time.monotonic()
    child.kill(signal.SIGTERM)
    child.expect(pexpect.EOF, timeout=10)
    assert time.monotonic() - start < 2.5


def test_a_tool_result_larger_than_the_window_is_cut_and_the_model_answers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conv, engine = looping_conversation([call_text("run", command="seq 1 20000"), "the numbers run to 20000"],
                                        n_ctx=2048)
    events = list(conv.send("count"))
    assert "the numbers run to 20000" in "".join(e for e in events if isinstance(e, str))
    result = next(m for m in conv.messages if m["role"] == "tool")
    assert "characters left out to fit the context window" in result["content"]
    assert result["content"].startswith("[exit code 0]\n1\n2\n") and "20000" in result["content"]


def test_head_and_tail_fits_what_it_is_given():
    count = len  # one token a character
    text = "".join(f"line {i}\n" for i in range(5000))
    for room in (100, 1000, 9000):
        cut = head_and_tail(text, room, count)
        assert count(cut) <= room and cut.startswith("line 0") and cut.rstrip().endswith("line 4999")


# ------------------------------------------------------------------ unbounded inputs
def test_read_file_reads_only_what_it_returns(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        line = b"x" * 99 + b"\n"
        for _ in range(64):
            f.write(line * 10_000)  # 64 MB of text
    tracemalloc.start()
    done = builtin._read_file({"path": str(big)}, never)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20
    assert "cut at 256 KiB" in done.text and "64,000,000-byte file" in done.summary
    part = builtin._read_file({"path": str(big), "start_line": 600_000, "end_line": 600_001}, never)
    assert part.text == "x" * 99 + "\n" + "x" * 99 + "\n"


def test_a_servers_endless_tool_call_name_is_refused_in_one_line():
    def piece(name: str) -> bytes:
        delta = {"tool_calls": [{"index": 0, "id": "a", "function": {"name": name, "arguments": ""}}]}
        return b"data: " + json.dumps({"choices": [{"delta": delta, "index": 0}]}).encode() + b"\n\n"
    pieces = [piece("n" * 4096) for _ in range(256)]  # a name of 1 MiB, as a server could stream for ever
    with FakeServer([*pieces, DONE]) as fake:
        r = run("--base-url", fake.url, "--tools", "run", stdin=b"hi")
    assert "name longer than 256 characters" in one_line_error(r)


@pytest.mark.parametrize("shape", ["fenced", "tagged"])
def test_a_long_streamed_call_is_read_in_one_pass(shape):
    """1 MiB of a call in 4-character pieces: each piece is looked at once (the text is
    joined once, when the call is whole), in either syntax."""
    from chatterm.tools.json_calls import HEAD_LIMIT
    from chatterm.tools.markup import HERMES, CallParser

    code = "x = 1\n" * ((1 << 20) // 6)
    call = json.dumps({"name": "python", "arguments": {"code": code}})
    text = f"```json\n{call}\n```" if shape == "fenced" else f"<tool_call>\n{call}\n</tool_call>"
    parser, events = CallParser(HERMES, ["python"]), []
    for at in range(0, len(text), 4):
        events += parser.feed(text[at:at + 4])
        candidate = parser._candidate
        if candidate is None or candidate._end < 0:  # while the object is open, only a list grows
            assert len(candidate._text if candidate is not None else parser._body_end) <= HEAD_LIMIT + 4, at
    events += parser.finish()
    assert [e.arguments for e in events if isinstance(e, ToolCall)] == [{"code": code}]


@pytest.mark.parametrize("depth", [65, 100_000])
def test_a_call_nested_deeper_than_any_call_needs_is_a_call_gone_wrong(depth):
    from chatterm.tools.markup import HERMES, CallParser

    nested = "[" * depth + "]" * depth
    for text in (f'<tool_call>{{"name": "run", "arguments": {{"command": {nested}}}}}</tool_call>',
                 f'```json\n{{"name": "run", "arguments": {{"command": {nested}}}}}\n```'):
        parser = CallParser(HERMES, ["run"])
        (call,) = [e for e in parser.feed(text) + parser.finish() if isinstance(e, ToolCall)]
        assert call.arguments is None and "nested more than 64 levels deep" in call.error
    with FakeServer([event(f'<tool_call>{{"name": "run", "arguments": {{"command": {nested}}}}}</tool_call>'),
                     DONE]) as fake:
        r = run("--base-url", fake.url, "--tools", "run", stdin=b"hi", timeout=60)
    assert b"Traceback" not in r.stderr and b"RecursionError" not in r.stderr and b"unexpected" not in r.stderr


def test_a_server_event_nested_too_deep_is_one_line():
    nested = "[" * 100_000 + "]" * 100_000
    with FakeServer([b"data: " + nested.encode() + b"\n\n", DONE]) as fake:
        r = run("--base-url", fake.url, stdin=b"hi", timeout=60)
    assert "nested more than 64 levels deep" in one_line_error(r)


def test_speculation_asked_of_a_server_is_one_line():
    with FakeServer([event("hi"), DONE]) as fake:
        for args in (("--speculate", "draft", "--draft", "x"), ("--speculate", "ngram"), ("--draft", "x")):
            r = run("--base-url", fake.url, *args, stdin=b"hi")
            assert "on a server" in one_line_error(r)


def test_in_a_real_terminal_the_hidden_part_is_on_screen_and_nothing_reorders_it(spawn, tmp_path):
    code = 'print("hello")  # comment\rimport os; os.system("touch PWNED")  # \u202eevil\u2066'
    env = write_script(tmp_path / "script.json", call_text("python", code=code), "As you wish.")
    child = spawn("--tools", "python", env=env, cwd=str(tmp_path))
    child.sendline("greet me")
    child.expect(r"python\? \[y\]es")
    screen = child.transcript
    assert '# comment\\rimport os; os.system("touch PWNED")  # \\u202eevil\\u2066' in screen
    assert "\u202e" not in screen and "\u2066" not in screen
    child.sendline("n")
    child.expect("As you wish.")
    child.expect("›")
    child.quit()
    assert not (tmp_path / "PWNED").exists()


def test_bidi_controls_in_any_text_reach_the_terminal_as_escapes():
    assert sanitize.clean("a\u202eb\u2067c") == "a\\u202eb\\u2067c"
    assert sanitize.clean("ok 中文 \u200d") == "ok 中文 \u200d"  # joiners stay: emoji need them


@pytest.mark.parametrize("keys, ran", [
    ("make it\ry", True),  # one key, no Enter
    ("make it\rxzy", True),  # other keys do nothing
    ("make it\r\r", False),  # Enter alone: the default shown, No
    ("make it\rvY", True),  # view, then yes (either case)
])
def test_an_approval_is_one_key(tmp_path, monkeypatch, keys, ran):
    monkeypatch.chdir(tmp_path)
    out = chat(keys, call_text("run", command="echo made > made.txt"), "done")
    assert (tmp_path / "made.txt").exists() == ran, out
    assert ("declined" in out) != ran
