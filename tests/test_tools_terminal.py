"""Tools as a user meets them: the real program in a terminal, the model scripted
(tests/scripted_engine.py) to ask for calls, the user answering."""

from __future__ import annotations

import json

from tests.helpers import happened_by, raw_escapes, run, session_files, witness
from tests.scripted_engine import write_script


def call(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def test_a_call_is_shown_asked_run_and_kept(spawn, tmp_path):
    env = write_script(tmp_path / "script.json",
                       "I will make it. " + call("run", command="echo made > made.txt; echo 'all good'"),
                       "The file is made.")
    child = spawn("--tools", "run", env=env, cwd=str(tmp_path))
    child.sendline("make a file")
    child.expect("the model asks to call run")
    child.expect(r"run\? \[y\]es \[N\]o \[a\]lways run \[e\]dit \[v\]iew")
    assert '{"name": "run"' not in child.transcript  # a call is shown as a call, never as markup
    child.send("y")  # one key, no Enter
    child.expect(r"▸ run: echo made > made.txt; echo 'all good' · exit 0 · 1 line  \(/tool 1\)")
    child.expect("The file is made.")
    child.expect("›")
    assert (tmp_path / "made.txt").read_text() == "made\n"
    child.sendline("/tool 1")
    child.expect("all good")
    child.expect("›")
    child.quit()
    saved = json.loads(session_files()[0].read_text())
    assert saved["format"] == 3 and [m["role"] for m in saved["messages"]][-3:] == ["assistant", "tool", "assistant"]
    again = spawn("-c", env=env, cwd=str(tmp_path))  # the transcript replays the call collapsed
    again.expect(r"▸ run: echo made > made.txt; echo 'all good' · exit 0 · 1 line  \(/tool 1\)")
    again.quit()


def test_a_hostile_call_declined_never_runs_and_stays_inert(spawn, tmp_path):
    evil = "touch pwned.txt # \x1b]0;PWN\x07\x1b[2J\x1b[31;1m"
    env = write_script(tmp_path / "script.json", call("run", command=evil), "As you wish.")
    child = spawn("--tools", "run", env=env, cwd=str(tmp_path))
    child.sendline("clean up")
    child.expect(r"run\? \[y\]es")
    child.sendline("n")
    child.expect(r"· declined")
    child.expect("As you wish.")
    child.expect("›")
    child.quit()
    assert not (tmp_path / "pwned.txt").exists()
    assert not raw_escapes(child.transcript)


def test_always_runs_the_rest_of_the_session_without_asking(spawn, tmp_path):
    env = write_script(tmp_path / "script.json", call("run", command="echo one"), "first done",
                       call("run", command="echo two"), "second done")
    child = spawn("--tools", "run", env=env, cwd=str(tmp_path))
    child.sendline("one")
    child.expect(r"run\? \[y\]es")
    child.sendline("a")
    child.expect("first done")
    child.expect("›")
    child.sendline("two")
    child.expect(r"▸ run \(always \(this session\)\) · running")
    child.expect("second done")
    child.expect("›")
    child.quit()
    assert "run? [y]es" not in child.transcript.split("first done")[1]


def test_a_hanging_tool_is_stopped_by_ctrl_c_and_the_chat_goes_on(spawn, tmp_path):
    env = write_script(tmp_path / "script.json", call("run", command="sleep 2; touch late.txt"),
                       "still here")
    child = spawn("--tools", "run", env=env, cwd=str(tmp_path))
    child.sendline("wait")
    child.expect(r"run\? \[y\]es")
    child.sendline("y")
    child.expect("running · Ctrl-C stops it")
    witness(2, tmp_path / "by-now")  # started after the tool: it touches later than the tool would have
    child.sendintr()
    child.expect(r"stopped \(Ctrl-C\)", timeout=10)
    child.expect("›")
    child.ask("are you there?", "still here")
    child.quit()
    happened_by(tmp_path / "by-now")
    assert not (tmp_path / "late.txt").exists()


def test_one_shot_runs_only_pre_approved_tools(tmp_path):
    script = tmp_path / "script.json"
    env = write_script(script, call("run", command="touch ran.txt"), "answer without it")
    r = run("--tools", "run", "make it", env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.decode().strip() == "answer without it"
    assert "declined 1 tool call (run)" in r.stderr.decode() and "--yes" in r.stderr.decode()
    assert not (tmp_path / "ran.txt").exists()
    script.with_suffix(".count").unlink()
    r = run("--yes", "run", "make it", env=env, cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "ran.txt").exists()
    assert "▸ run · exit 0" in r.stderr.decode()


def test_unknown_tools_are_one_line_before_anything_loads(tmp_path):
    r = run("--tools", "run,rm_rf", "hi")
    assert r.returncode == 1 and "unknown tool 'rm_rf'" in r.stderr.decode() and "Traceback" not in r.stderr.decode()


def test_a_hostile_server_asks_for_a_command_the_user_declines(spawn, tmp_path):
    from tests.fakeserver import DONE, FakeServer, call_events, event

    evil = json.dumps({"command": f"touch {tmp_path}/owned.txt \x1b]0;PWN\x07\x1b[2J"})
    with FakeServer([event("Fine, I will not."), DONE],
                    replies=[[event("Let me tidy up. "), *call_events("run", evil)]]) as fake:
        child = spawn("--base-url", fake.url, "--tools", "run", threads=False, cwd=str(tmp_path))
        child.sendline("tidy my folder")
        child.expect(r"run\? \[y\]es")
        child.sendline("n")
        child.expect("· declined")
        child.expect("Fine, I will not.")
        child.expect("›")
        child.quit()
        second = [q["json"] for q in fake.requests if q["path"].endswith("chat/completions")][-1]
    assert not (tmp_path / "owned.txt").exists()
    assert not raw_escapes(child.transcript)
    assert "declined" in second["messages"][-1]["content"] and second["messages"][-1]["role"] == "tool"
