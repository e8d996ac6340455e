"""The real `chatterm` in a pseudo terminal with the default model, as a person uses it."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pexpect
import pytest

from tests.helpers import worker_pid


@pytest.fixture
def spawn(private_dirs):
    children = []

    def start(*args, **kw):
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
        child = pexpect.spawn(sys.executable, ["-m", "chatterm", "--threads", "2", *args],
                              env=env, encoding="utf-8", timeout=60, dimensions=(30, 100), **kw)
        children.append(child)
        child.expect("/help for commands")
        return child
    yield start
    for child in children:
        child.terminate(force=True)


def ask(child, question: str, answer: str) -> None:
    child.sendline(question)
    child.expect(answer)
    child.expect("›")  # the prompt is back


def quit_(child) -> None:
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def session_files():
    from chatterm import sessions
    return sorted(sessions.sessions_dir().glob("*.json"))


def test_ask_save_cut_continue_exit_then_resume(spawn, tmp_path):
    child = spawn("--temperature", "0", "--max-tokens", "3000")
    ask(child, "What is the capital of France?", "Paris")
    child.sendline(f"/save {tmp_path / 'chat.md'}")
    child.expect("saved to")
    child.sendline("Write a very long story about a dragon and a knight, with many chapters.")
    time.sleep(3.0)  # the reply is streaming (3000 tokens take far longer)
    child.sendintr()  # Ctrl-C stops the reply, not chatterm
    child.expect("reply cut", timeout=5)
    child.sendline(f"/save {tmp_path / 'cut.json'}")
    child.expect("saved to")
    cut = json.loads((tmp_path / "cut.json").read_text())["messages"][-1]
    assert cut["role"] == "assistant" and cut["finish"] == "cancelled" and len(cut["content"]) > 20
    child.sendline("/continue")
    time.sleep(2.0)
    child.sendintr()
    child.expect(["reply cut", "›"], timeout=5)  # cut again, or the continuation already ended
    child.sendline(f"/save {tmp_path / 'chat.json'}")
    child.expect("saved to")
    quit_(child)
    child.close()
    assert child.exitstatus == 0
    saved = json.loads((tmp_path / "chat.json").read_text())
    story = saved["messages"][-1]
    assert len(saved["messages"]) == len(json.loads((tmp_path / "cut.json").read_text())["messages"])
    assert story["content"].startswith(cut["content"]) and len(story["content"]) > len(cut["content"])
    assert "Paris" in (tmp_path / "chat.md").read_text()

    again = spawn("-c")
    again.expect("Paris")  # the conversation is shown again
    again.expect(f"{len(saved['messages'])} messages")
    quit_(again)


def test_kill_9_keeps_every_completed_turn(spawn):
    child = spawn("--temperature", "0", "--session", "crashy")
    ask(child, "What is the capital of France?", "Paris")
    child.sendline("Write a long essay about the history of Rome.")
    time.sleep(2.5)
    os.kill(child.pid, signal.SIGKILL)
    child.expect(pexpect.EOF)
    saved = json.loads(session_files()[0].read_text())
    contents = [m["content"] for m in saved["messages"]]
    assert any("Paris" in c for c in contents)
    assert "Write a long essay about the history of Rome." in contents  # the question survived

    resumed = spawn("--session", "crashy")
    resumed.expect("Paris")
    quit_(resumed)


def test_chinese_and_a_code_block_render(spawn):
    child = spawn("--temperature", "0", "--session", "zh")
    child.sendline("用中文回答：中国的首都是哪里？")
    child.expect("›")
    deadline = time.time() + 60
    while time.time() < deadline:  # the session file has the reply once it is complete
        messages = json.loads(session_files()[0].read_text())["messages"] if session_files() else []
        if messages and messages[-1]["role"] == "assistant":
            break
        time.sleep(0.2)
    reply = messages[-1]["content"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in reply) and "\ufffd" not in reply
    ask(child, "Write a Python function that returns the square of a number, in a Markdown code block.",
        r"\[1\] python")
    quit_(child)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL], ids=lambda s: s.name)
def test_engine_crash_mid_reply_the_chat_goes_on(spawn, sig):
    child = spawn("--temperature", "0", "--max-tokens", "2000", "--session", "crash")
    ask(child, "What is the capital of France?", "Paris")
    child.sendline("Write a long essay about the history of Rome.")
    child.expect("history of Rome")  # the question, echoed
    time.sleep(1.5)  # the reply is streaming (2000 tokens take far longer)
    os.kill(worker_pid(child.pid), sig)
    child.expect(rf"the llama\.cpp engine crashed \({sig.name}")
    child.expect("smollm2; restarting it")
    child.expect("/continue resumes it")
    ask(child, "What is the capital of Germany?", "Berlin")  # answered by the restarted engine
    quit_(child)
    messages = json.loads(session_files()[0].read_text())["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant",
                                             "user", "assistant"]
    assert "Paris" in messages[2]["content"] and messages[2]["finish"] == "eog"
    cut = messages[4]
    assert cut["finish"] == "error" and "Rome" in cut["content"]  # the part streamed, marked cut
    assert "Berlin" in messages[6]["content"]


def test_type_while_the_model_loads_and_stop_waiting_keeps_the_question(spawn):
    child = spawn("--temperature", "0", "--session", "early")
    worker = worker_pid(child.pid)
    os.kill(worker, signal.SIGSTOP)  # still loading, for as long as this test wants
    child.sendline("What is the capital of France?")
    child.expect("loading smollm2")
    child.sendintr()
    child.expect("stopped waiting for the model")
    child.expect("› What is the capital of France\\?")  # back in the input, nothing lost
    os.kill(worker, signal.SIGCONT)
    child.sendline("")  # Enter sends what is in the input
    child.expect("Paris")
    child.expect("›")
    quit_(child)


def test_a_model_that_cannot_load_is_one_line_and_exit_1(spawn, tmp_path, default_model_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(default_model_path.read_bytes()[:3000])  # found, but corrupt: the worker says so
    child = spawn("-m", str(broken))
    child.expect(r"chatterm: error: .*broken\.gguf: corrupt GGUF")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
