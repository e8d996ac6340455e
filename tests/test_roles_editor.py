"""Roles (named system prompts) and long prompts written in the user's editor."""

from __future__ import annotations

import os
import sys

import pytest

from chatterm import roles
from chatterm.errors import ConfigError
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import drive, one_line_error, run


@pytest.fixture
def editor(tmp_path, monkeypatch):
    """An $EDITOR that writes `text` into the file it is given (appending to what is there)."""
    def make(text: str, append: bool = False) -> str:
        script = tmp_path / "editor.py"
        script.write_text(f"import sys\nwith open(sys.argv[1], {'a' if append else 'w'!r}, encoding='utf-8') as f:\n"
                          f"    f.write({text!r})\n")
        command = f"{sys.executable} {script}"
        monkeypatch.setenv("VISUAL", command)
        return command
    return make


def test_shipped_roles_and_the_users_own():
    shipped = roles.load()
    assert {"translator", "reviewer", "concise"} <= set(shipped)
    assert "Chinese" in shipped["translator"].prompt and shipped["translator"].source == "chatterm"
    path = roles.user_roles_toml()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[concise]\nprompt = "Say it in five words."\n[pirate]\ndescription = "arr"\nprompt = "Talk like a pirate."\n')
    mine = roles.load()
    assert mine["concise"].prompt == "Say it in five words." and mine["concise"].source == "yours"
    assert mine["pirate"].description == "arr"
    path.write_text("[broken]\ndescription = 'no prompt'\n")
    with pytest.raises(ConfigError, match="role 'broken' needs a prompt"):
        roles.load()
    path.write_text("not toml [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        roles.load()


def test_role_in_the_repl_sets_the_system_prompt(fake_model):
    repl, out = drive("/role\r/role translator\r你好\r/role nope\r", fake_model("Hello"))
    assert "  translator   Chinese ⇄ English translation" in out
    assert "role translator: Chinese ⇄ English" in out and "error: no role 'nope'" in out
    assert repl.conversation.messages[0]["content"] == roles.find("translator").prompt
    assert "translator" in out.split("role translator:")[0]  # listed before it was chosen


def test_role_on_the_command_line_reaches_the_model():
    with FakeServer([event("ok"), DONE]) as fake:
        r = run("--base-url", fake.url, "--role", "concise", "Why is the sky blue?")
        assert r.returncode == 0, r.stderr
        sent = [q["json"] for q in fake.requests if q["path"].endswith("chat/completions")][-1]
        assert sent["messages"][0] == {"role": "system", "content": roles.find("concise").prompt}
    assert "no role 'nope'" in one_line_error(run("--role", "nope", "hi"))
    assert "not both" in one_line_error(run("--role", "concise", "-s", "x", "hi"))


def test_edit_alone_sends_what_the_editor_saved(editor, fake_model):
    editor("A long question\nover two lines, 中文也行。\n")
    repl, out = drive("/edit\r", fake_model("answer"))
    assert repl.conversation.messages[-2] == {"role": "user", "content": "A long question\nover two lines, 中文也行。"}
    editor("")
    repl, out = drive("/edit\r", fake_model("answer"))
    assert "(nothing saved: nothing sent)" in out and len(repl.conversation.messages) == 1


def test_a_missing_editor_is_one_line(monkeypatch, fake_model):
    monkeypatch.setenv("VISUAL", "/no/such/editor")
    _, out = drive("/edit\r", fake_model())
    assert "error: cannot use the editor '/no/such/editor'" in out


def test_ctrl_x_ctrl_e_edits_the_input_in_the_editor_and_sends_it(editor, spawn):
    editor(" (edited in the editor)", append=True)
    with FakeServer([event("Got it."), DONE]) as fake:
        child = spawn("--base-url", fake.url)
        child.send("draft question")
        child.send("\x18\x05")  # Ctrl-X Ctrl-E
        child.expect("Got it.")
        child.expect("›")
        sent = [q["json"] for q in fake.requests if q["path"].endswith("chat/completions")][-1]
        assert sent["messages"][-1]["content"] == "draft question (edited in the editor)"
        child.quit()


def test_without_visual_or_editor_the_systems_editor_is_used(tmp_path, monkeypatch, fake_model):
    fake = tmp_path / "bin" / "editor"  # Debian's alternatives name, looked for first
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen(sys.argv[1], 'w').write('from the system editor')\n")
    fake.chmod(0o755)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    repl, _ = drive("/edit\r", fake_model("ok"))
    assert repl.conversation.messages[-2]["content"] == "from the system editor"
