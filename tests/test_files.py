"""Files in the conversation: /file and -f, paths, globs and folders, what is refused,
what the model receives, what the toolbar says it costs."""

from __future__ import annotations

import json
import os

import pytest
from prompt_toolkit.document import Document

from chatterm import attachments
from chatterm.errors import InputError
from chatterm.ui.prompt_keys import SlashCompleter
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import drive, one_line_error, run

CODE = 'def greet(name):\n    """Say hello."""\n    return f"```{name}```"\n'
CHINESE = "北京是中国的首都。\n上海是最大的城市。\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "greet.py").write_text(CODE)
    (tmp_path / "src" / "notes.txt").write_text(CHINESE, encoding="utf-8")
    (tmp_path / "src" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (tmp_path / "src" / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "src" / ".hidden").write_text("secret")
    return tmp_path


def test_a_folder_takes_its_text_files_and_says_what_it_left_out(project):
    found = attachments.gather([str(project / "src")])
    assert [os.path.basename(f.name) for f in found.files] == ["greet.py", "notes.txt"]
    assert sorted(os.path.basename(s.split(" (")[0]) for s in found.skipped) == ["latin1.txt", "logo.png"]
    assert any("a binary file" in s for s in found.skipped) and any("not UTF-8" in s for s in found.skipped)


def test_globs_and_paths(project):
    found = attachments.gather([str(project / "src" / "*.py"), str(project / "src" / "notes.txt")])
    assert [f.text for f in found.files] == [CODE, CHINESE]
    with pytest.raises(InputError, match="no file matches"):
        attachments.gather([str(project / "*.rs")])
    with pytest.raises(InputError, match="no such file or folder"):
        attachments.gather([str(project / "missing.py")])


@pytest.mark.parametrize("name, why", [("logo.png", "a binary file, not text"),
                                       ("latin1.txt", "not UTF-8 text (invalid byte at offset 3)")])
def test_a_file_named_outright_is_refused_when_not_text(project, name, why):
    with pytest.raises(InputError, match=why.replace("(", r"\(").replace(")", r"\)")):
        attachments.gather([str(project / "src" / name)])


def test_too_much_text_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.log"
    with open(big, "wb") as f:
        f.truncate(attachments.MAX_BYTES + 1)  # sparse: reading it would take a while
    with pytest.raises(InputError, match="more than 1,000 KB"):
        attachments.gather([str(big)])


def test_the_fence_outlasts_any_backticks_in_the_file(project):
    [f] = attachments.gather([str(project / "src" / "greet.py")]).files
    block = f.block()
    assert block.startswith(f"{f.name}:\n````python\n") and block.endswith("\n````")
    assert attachments.message([f], "Explain.").endswith("````\n\nExplain.")



def test_file_goes_with_the_next_message_and_its_cost_is_shown(project, fake_model):
    src = project / "src"
    repl, out = drive(f"/file {src}/greet.py {src}/notes.txt\r/file\rWhat do these say?\rAnd now?\r",
                      fake_model("They greet.", "Nothing attached."))
    code_tokens = len(attachments.Attachment(f"{src}/greet.py", CODE).block().encode())  # the fake counts bytes
    assert f"{src}/greet.py  {code_tokens:,} tokens" in out
    assert "2 files, " in out and "go with your next message (context " in out
    first, second = [m["content"] for m in repl.conversation.messages if m["role"] == "user"]
    assert first.startswith(f"{src}/greet.py:\n````python\n") and CHINESE.strip() in first
    assert first.endswith("What do these say?") and second == "And now?"  # sent once, then gone
    assert not repl.attached


def test_toolbar_counts_the_files_before_sending(project, fake_model):
    repl, _ = drive(f"/file {project}/src/notes.txt\r", fake_model())
    toolbar = repl.toolbar()[0][1]
    cost = len(repl.attached[0].block().encode())
    assert f"+1 file ({cost:,} tokens)" in toolbar


def test_refusals_are_one_line_and_nothing_is_attached(project, fake_model):
    repl, out = drive(f"/file {project}/src/logo.png\r/file clear\r/file 'unclosed\r", fake_model())
    assert "error: " in out and "logo.png: a binary file, not text" in out
    assert "no files attached" in out and "No closing quotation" in out
    assert not repl.attached


def test_paths_complete_after_file(project, monkeypatch):
    monkeypatch.chdir(project)
    completer = SlashCompleter()
    done = [c.text for c in completer.get_completions(Document("/file src/greet.py sr"), None)]
    assert "c/" in done or "c" in done


def test_dash_f_sends_the_files_with_the_question(project):
    with FakeServer([event("ok"), DONE]) as fake:
        r = run("--base-url", fake.url, "-f", str(project / "src" / "greet.py"), "-f", str(project / "src"),
                "Review this.")
        assert r.returncode == 0, r.stderr
        assert "left out" in r.stderr.decode() and "logo.png" in r.stderr.decode()
        sent = [q["json"] for q in fake.requests if q["path"].endswith("chat/completions")][-1]
        content = sent["messages"][-1]["content"]
        assert content.count("greet.py:\n````python") == 2 and content.endswith("Review this.")
        assert CHINESE.strip() in content


@pytest.mark.parametrize("name, why", [("logo.png", "a binary file"), ("latin1.txt", "not UTF-8 text")])
def test_dash_f_refuses_binaries_in_one_line(project, name, why):
    r = run("-f", str(project / "src" / name), "Hi")
    assert why in one_line_error(r)


def test_dash_f_without_a_question(project):
    r = run("-f", str(project / "src" / "greet.py"))
    assert "-f adds files to a question" in one_line_error(r)


def test_the_files_are_in_the_saved_session(project, fake_model):
    repl, _ = drive(f"/file {project}/src/notes.txt\r总结一下\r", fake_model("好的"))
    saved = json.loads(repl.session.path.read_text(encoding="utf-8"))
    assert CHINESE.strip() in saved["messages"][-2]["content"]
