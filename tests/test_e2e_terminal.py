"""The real `chatterm` in a pseudo terminal with the default model, as a person uses it."""

from __future__ import annotations

import json
import os
import signal
import time

import pexpect
import pytest

from tests.helpers import session_files, worker_pid
from tests.scripted_engine import write_script

# The scripted engine (tests/scripted_engine.py) runs in the real worker: replies come
# as the script says, so a test waits for a number of words, never for a time.
LONG = {"text": "Once upon a time", "words": 4000, "delay_s": 0.002}


def test_ask_save_cut_continue_exit_then_resume(spawn, tmp_path):
    env = write_script(tmp_path / "script.json", "The capital of France is Paris.", LONG, LONG)
    child = spawn("--max-tokens", "30000", env=env)
    child.ask("What is the capital of France?", "Paris")
    child.sendline(f"/save {tmp_path / 'chat.md'}")
    child.expect("saved to")
    child.sendline("Write a very long story about a dragon and a knight, with many chapters.")
    child.expect("w0030")  # the reply is streaming
    child.sendintr()  # Ctrl-C stops the reply, not chatterm
    child.expect("reply cut", timeout=5)
    child.sendline(f"/save {tmp_path / 'cut.json'}")
    child.expect("saved to")
    cut = json.loads((tmp_path / "cut.json").read_text())["messages"][-1]
    assert cut["role"] == "assistant" and cut["finish"] == "cancelled" and "w0030" in cut["content"]
    child.sendline("/continue")
    child.expect("w0020")
    child.sendintr()
    child.expect("reply cut", timeout=5)
    child.sendline(f"/save {tmp_path / 'chat.json'}")
    child.expect("saved to")
    child.quit()
    child.close()
    assert child.exitstatus == 0
    saved = json.loads((tmp_path / "chat.json").read_text())
    story = saved["messages"][-1]
    assert len(saved["messages"]) == len(json.loads((tmp_path / "cut.json").read_text())["messages"])
    assert story["content"].startswith(cut["content"]) and len(story["content"]) > len(cut["content"])
    assert "Paris" in (tmp_path / "chat.md").read_text()

    again = spawn("-c", env=env)
    again.expect("Paris")  # the conversation is shown again
    again.expect(f"{len(saved['messages'])} messages")
    again.quit()


def test_kill_9_keeps_every_completed_turn(spawn, tmp_path):
    env = write_script(tmp_path / "script.json", "The capital of France is Paris.", LONG)
    child = spawn("--session", "crashy", env=env)
    child.ask("What is the capital of France?", "Paris")
    child.sendline("Write a long essay about the history of Rome.")
    child.expect("w0020")
    os.kill(child.pid, signal.SIGKILL)
    child.expect(pexpect.EOF)
    saved = json.loads(session_files()[0].read_text())
    contents = [m["content"] for m in saved["messages"]]
    assert any("Paris" in c for c in contents)
    assert "Write a long essay about the history of Rome." in contents  # the question survived

    resumed = spawn("--session", "crashy", env=env)
    resumed.expect("Paris")
    resumed.quit()


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
    child.ask("Write a Python function that returns the square of a number, in a Markdown code block.",
        r"\[1\] python")
    child.quit()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL], ids=lambda s: s.name)
def test_engine_crash_mid_reply_the_chat_goes_on(spawn, sig, tmp_path):
    crashing = {"text": "The history of Rome", "words": 4000, "delay_s": 0.002, "crash_after": 200,
                "signal": sig.name}
    env = write_script(tmp_path / "script.json", "The capital of France is Paris.", crashing,
                       "The capital of Germany is Berlin.")
    child = spawn("--max-tokens", "2000", "--session", "crash", env=env)
    child.ask("What is the capital of France?", "Paris")
    child.sendline("Write a long essay about the history of Rome.")
    child.expect(rf"the llama\.cpp engine crashed \({sig.name}")  # after 200 tokens of the reply
    child.expect("smollm2; restarting it")
    child.expect("/continue resumes it")
    child.ask("What is the capital of Germany?", "Berlin")  # answered by the restarted engine
    child.quit()
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
    child.quit()


def test_a_model_that_cannot_load_is_one_line_and_exit_1(spawn, tmp_path, default_model_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(default_model_path.read_bytes()[:3000])  # found, but corrupt
    child = spawn("-m", str(broken), ready=None)  # refused before the chat opens
    child.expect(r"chatterm: error: .*broken\.gguf: truncated: the file has 3,000 bytes")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1


def _context(child) -> int:
    """Tokens in the window, as /stats tells them."""
    child.sendline("/stats")
    child.expect(r"context\s+([\d,]+) / ")
    used = int(child.match.group(1).replace(",", ""))
    child.expect("›")
    return used


def test_the_context_meter_follows_undo_and_new(spawn):
    child = spawn("--temperature", "0", "--session", "meter")
    child.ask("What is the capital of France?", "Paris")
    after_reply = _context(child)
    child.ask("/undo", "removed the last exchange")
    after_undo = _context(child)
    assert 0 < after_undo < after_reply - 5  # the exchange left the window
    child.ask("What is the capital of France?", "Paris")
    child.ask("/new", "new session")
    assert _context(child) == after_undo  # just the system prompt again
    child.quit()


def test_settings_are_saved_and_kept_across_model_switches(spawn):
    child = spawn("--session", "tuned")
    child.ask("/set temperature 0.3", "temperature = 0.3")
    child.ask("/set top_p 2", r"top_p = 2\.0 is out of range \(0-1\)")
    child.ask("/model smollm2", "now chatting with smollm2")
    child.ask("/set", r"temperature\s+0\.3\s+\(set\)")
    child.quit()
    saved = json.loads(session_files()[0].read_text())
    assert saved["sampling"] == {"temperature": 0.3}
    resumed = spawn("--session", "tuned")
    resumed.ask("/set", r"temperature\s+0\.3\s+\(set\)")
    resumed.quit()


def test_a_failed_retry_keeps_the_question_and_the_reply(spawn, tmp_path):
    child = spawn("--temperature", "0", "--ctx", "512", "--session", "retry")
    child.ask("What is the capital of France?", "Paris")
    child.ask("/system " + "Always answer at length. " * 120, "system prompt set")
    child.ask("/retry", "context window holds 512")
    child.ask(f"/save {tmp_path / 'after.json'}", "saved to")
    child.quit()
    for saved in (tmp_path / "after.json", session_files()[0]):
        messages = json.loads(saved.read_text())["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert "Paris" in messages[2]["content"] and messages[2]["finish"] == "eog"


def test_ctrl_c_while_a_model_loads_stops_the_load_not_chatterm(spawn, user_models_toml):
    import socket

    silent = socket.socket()  # accepts connections and never answers: a model that loads forever
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    user_models_toml(f'[models.stuck]\nbase_url = "http://127.0.0.1:{silent.getsockname()[1]}/v1"\n'
                     'timeout = 120\n')
    try:
        child = spawn("--temperature", "0")
        child.sendline("/model stuck")
        silent.settimeout(30)
        connection, _ = silent.accept()  # the command runs and waits for the server
        child.sendintr()
        child.expect(r"\(stopped\)")
        child.ask("What is the capital of France?", "Paris")  # still chatting with the default model
        child.quit()
        connection.close()
    finally:
        silent.close()
