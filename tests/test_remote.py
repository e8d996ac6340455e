"""The remote engine against a real OpenAI-compatible server (llama-cpp-python's own,
serving the default model on 127.0.0.1), and against a scripted one for what a real
server will not do on demand: hostile content, malformed streams, errors, silence."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chatterm.engines.remote.engine import estimate_tokens
from chatterm.engines.remote.errors import RemoteError
from chatterm.errors import ChattermError, ConfigError
from chatterm.loader import RunOptions
from chatterm.models.catalog import Catalog
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import converse, one_line_error, run, session_files

# The server serves the default model: the system prompt its catalogue entry gives it.
SYSTEM = Catalog.load().find("smollm2").system or ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.llama_server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("llama_cpp.server exited at start")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama_cpp.server did not start in 90 s")


@pytest.fixture(scope="module")
def server(default_model_path):
    process, url = start_server(default_model_path)
    yield url
    process.terminate()
    process.wait(10)


def remote_chat(url: str, **sampling):
    options = RunOptions(base_url=url, system=SYSTEM,
                         sampling={"temperature": 0.0, **sampling})
    return converse(options)


# ------------------------------------------------------------------ a real server
def test_one_shot_answer_from_the_server(server):
    r = run("--base-url", server, "--temperature", "0", "-s", SYSTEM,
            stdin=b"What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout.decode()


def test_multi_turn_context_and_exact_token_counts(server, default_model_path):
    chat = remote_chat(server, max_tokens=24)
    first = "".join(chat.send("Name one colour."))
    used_after_first = chat.measure()
    second = "".join(chat.send("Name another one."))
    assert first and second
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert chat.messages[2]["content"] == first and chat.messages[4]["content"] == second
    assert chat.last.prompt_tokens > used_after_first  # the second prompt carried the first turn
    # Counts come from the server's tokenizer: the same as the local one's.
    assert chat.engine.counts_exactly
    local = converse(RunOptions(engine="llama.cpp")).engine
    for text in ("Hello world", "北京是中国的首都。", "def f(x):\n    return x"):
        assert chat.engine.count_tokens(text) == len(local.tokenize(text, special=False))


def test_chinese_streams_whole_characters(server):
    chat = remote_chat(server, max_tokens=40)
    text = "".join(chat.send("用中文介绍一下北京。"))
    assert text.strip() and "\ufffd" not in text


def test_cancel_closes_the_stream_promptly_and_the_session_goes_on(server):
    chat = remote_chat(server, max_tokens=300)
    seen: list[str] = []
    cancel_at: list[float] = []

    def cancelled() -> bool:
        if len(seen) >= 3 and not cancel_at:
            cancel_at.append(time.perf_counter())
        return bool(cancel_at)

    for chunk in chat.send("Write a long story about a dragon.", cancelled):
        seen.append(chunk)
    assert time.perf_counter() - cancel_at[0] < 0.5
    assert chat.last.finish == "cancelled" and len(seen) == 3
    assert chat.messages[-1] == {"role": "assistant", "content": "".join(seen), "finish": "cancelled"}
    assert "".join(chat.send("Say hi.")).strip()  # the same session goes on


def test_continue_uses_the_completions_api_with_the_entry_template(server):
    chat = converse(RunOptions(base_url=server, template="chatml",
                                sampling={"temperature": 0.0, "max_tokens": 8}))
    first = "".join(chat.send("Count from one to twenty in words."))
    assert chat.last.finish == "length"
    more = "".join(chat.continue_reply())
    assert more and chat.messages[-1]["content"] == first + more


def test_continue_without_a_template_says_what_to_set(server):
    chat = remote_chat(server, max_tokens=4)
    "".join(chat.send("Hi"))
    with pytest.raises(ChattermError, match="template"):
        "".join(chat.continue_reply())


def test_server_killed_mid_reply_keeps_the_partial_reply(default_model_path):
    process, url = start_server(default_model_path)
    try:
        chat = remote_chat(url, max_tokens=400)
        saved: list[list[dict]] = []
        chat.on_change = lambda: saved.append([dict(m) for m in chat.messages])
        seen: list[str] = []
        with pytest.raises(RemoteError, match="mid-reply|connection"):
            for chunk in chat.send("Write a long story about the sea."):
                seen.append(chunk)
                if len(seen) == 3:
                    process.send_signal(signal.SIGKILL)
        assert len(seen) >= 3
        assert chat.messages[-1]["content"] == "".join(seen) and chat.messages[-1]["finish"] == "error"
        assert saved[-1][-1]["content"] == "".join(seen)  # and it was saved
    finally:
        process.kill()
        process.wait(10)


# ------------------------------------------------------------------ a scripted server
def test_hostile_content_cannot_drive_the_terminal():
    hostile = ["\x1b]52;c;ZXZpbA==\x07", "\x1b[2J", "text\r", "\x9b31m", "\x1b]8;;http://x\x07link"]
    with FakeServer([event(t) for t in hostile] + [DONE]) as fake:
        r = run("--base-url", fake.url, "Hi")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in out
    assert "link" in out and "text" in out


@pytest.mark.parametrize("chunks, message", [
    ([b"data: {not json\n\n"], "malformed stream"),
    ([b'data: "a string"\n\n'], "malformed stream"),
    ([b'data: {"error": {"message": "out of memory"}}\n\n'], "out of memory"),
])
def test_malformed_streams_are_one_line_errors(chunks, message):
    with FakeServer([event("Hello"), *chunks]) as fake:
        r = run("--base-url", fake.url, "Hi")
    assert message in one_line_error(r)
    assert r.stdout.decode().startswith("Hello")  # what came before the fault was shown


def test_a_stream_closed_before_the_end_is_a_cut_reply():
    """No [DONE] and no finish_reason: a proxy or the server closed the connection."""
    with FakeServer([event("Hello"), event(" wor")]) as fake:
        r = run("--base-url", fake.url, "Hi")
        assert "the stream ended before the reply did" in one_line_error(r)
        assert r.stdout.decode().startswith("Hello wor")
        chat = converse(RunOptions(base_url=fake.url))
        with pytest.raises(RemoteError, match="ended before the reply did"):
            "".join(chat.send("Hi"))
        assert chat.messages[-1] == {"role": "assistant", "content": "Hello wor", "finish": "error"}


def test_a_finish_reason_without_done_is_a_whole_reply():
    finished = b"data: " + json.dumps({"choices": [{"delta": {}, "index": 0, "finish_reason": "stop"}]}).encode()
    with FakeServer([event("Hello"), finished + b"\n\n"]) as fake:
        chat = converse(RunOptions(base_url=fake.url))
        assert "".join(chat.send("Hi")) == "Hello"
        assert chat.messages[-1]["finish"] == "eog"


@pytest.mark.parametrize("status, message", [
    (401, "refused the request (HTTP 401"), (403, "HTTP 403"), (404, "not found (HTTP 404"),
    (429, "rate limited"), (500, "server error (HTTP 500"), (503, "server error (HTTP 503"),
])
def test_http_errors_are_one_line(status, message):
    with FakeServer(status=status, body=b'{"error": {"message": "nope"}}') as fake:
        r = run("--base-url", fake.url, "Hi")
    line = one_line_error(r)
    assert message in line and "nope" in line


def test_connection_refused():
    r = run("--base-url", f"http://127.0.0.1:{_free_port()}/v1", "Hi")
    assert "cannot connect" in one_line_error(r)


def test_silent_server_times_out(user_models_toml):
    with FakeServer(stall=True) as fake:
        user_models_toml(f'[models.slow]\nbase_url = "{fake.url}"\ntimeout = 1\n')
        start = time.monotonic()
        r = run("-m", "slow", "Hi")
        assert time.monotonic() - start < 15
    assert "timeout" in one_line_error(r)


def test_api_key_from_the_environment_is_sent_and_never_saved(private_dirs, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    with FakeServer([event("Hi there"), DONE]) as fake:
        chat = converse(RunOptions(base_url=fake.url, api_key_env="MY_KEY"))
        from chatterm import sessions
        session = sessions.Session(name="keytest", messages=chat.messages)
        chat.on_change = lambda: session.save()
        assert "".join(chat.send("Hello")) == "Hi there"
        assert fake.requests[-1]["headers"]["Authorization"] == "Bearer sk-secret-123"
        assert fake.requests[-1]["json"]["model"] == "fake-model"
    saved = list((private_dirs / "data").rglob("*.json"))
    assert saved and all("sk-secret" not in p.read_text() for p in saved)


def test_api_key_env_must_be_a_name_and_set(monkeypatch):
    with FakeServer([DONE]) as fake:
        with pytest.raises(ConfigError, match="not the key") as e:
            converse(RunOptions(base_url=fake.url, api_key_env="sk-abc/def"))
        assert "sk-abc" not in str(e.value)
        monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
        with pytest.raises(ConfigError, match="UNSET_KEY_VAR is not set"):
            converse(RunOptions(base_url=fake.url, api_key_env="UNSET_KEY_VAR"))


def test_without_a_tokenize_endpoint_counts_are_estimated():
    with FakeServer([DONE]) as fake:
        engine = converse(RunOptions(base_url=fake.url)).engine
        assert engine.count_tokens("Hello world!") == estimate_tokens("Hello world!") == 4
        assert not engine.counts_exactly
        assert estimate_tokens("北京") == 2  # 6 bytes: CJK counts about a token a character


def test_bad_base_url_in_models_toml(user_models_toml):
    user_models_toml('[models.x]\nbase_url = "ftp://host"\n')
    assert "http(s) URL" in one_line_error(run("-m", "x", "Hi"))
    user_models_toml('[models.x]\nbase_url = "http://h/v1"\ntimeout = -1\n')
    assert "timeout" in one_line_error(run("-m", "x", "Hi"))


def test_repl_in_a_terminal_against_the_server(server, spawn, tmp_path):
    child = spawn("--base-url", server, "--temperature", "0", "-s", SYSTEM, "--max-tokens", "2000",
                  dimensions=(30, 160), threads=False)
    child.ask("What is the capital of France?", "Paris")
    child.sendline("Write a very long story about a dragon and a knight, with many chapters.")
    child.expect("chapters")  # the question, echoed: from here on, the reply
    child.expect(r"\b[Tt]he ")  # a word the question does not have: the reply is streaming
    child.expect(r"[a-z]\. ")  # and has finished a sentence
    child.sendintr()
    child.expect("reply cut", timeout=5)
    child.sendline(f"/save {tmp_path / 'chat.json'}")
    child.expect("saved to")
    child.quit()
    messages = json.loads((tmp_path / "chat.json").read_text())["messages"]
    assert "Paris" in messages[2]["content"]
    assert messages[-1]["finish"] == "cancelled" and messages[-1]["content"]


def test_a_failed_request_is_recorded_as_a_failed_reply(spawn):
    with FakeServer(status=500, body=b'{"error": {"message": "overloaded"}}') as fake:
        chat = converse(RunOptions(base_url=fake.url))
        with pytest.raises(RemoteError, match="overloaded"):
            "".join(chat.send("Hi"))
        assert chat.messages[-2:] == [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "", "finish": "error"}]
        child = spawn("--base-url", fake.url, "--session", "failing", threads=False)
        child.ask("Hi", r"error: .*overloaded.*/retry asks again")
        child.quit()
    messages = json.loads(session_files()[0].read_text())["messages"]
    assert messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "finish": "error"}]


def test_old_turns_leave_the_window_and_oversized_prompts_are_refused():
    from chatterm.errors import ContextOverflowError
    with FakeServer([event("ok"), DONE]) as fake:
        chat = converse(RunOptions(base_url=fake.url, ctx=100, system="Be brief.",
                                    sampling={"max_tokens": 16, "compact": False}))  # leaving out, not summarizing
        for i in range(4):
            assert "".join(chat.send(f"message number {i} " + "x" * 60)) == "ok"
        sent = fake.requests[-1]["json"]["messages"]
        assert sent[0] == {"role": "system", "content": "Be brief."}  # kept
        assert sent[-1]["content"].startswith("message number 3") and len(sent) < 9
        assert chat.dropped > 0 and len(chat.messages) == 9  # nothing is lost locally
        with pytest.raises(ContextOverflowError, match="estimated"):
            "".join(chat.send("y" * 400))
        assert chat.messages[-1]["content"] == "ok"  # the refused message was not added


def test_hostile_error_messages_are_shown_inert():
    body = b'{"error": {"message": "\\u001b]52;c;ZXZpbA==\\u0007boom \\u001b[2J"}}'
    with FakeServer(status=500, body=body) as fake:
        r = run("--base-url", fake.url, "Hi")
    line = one_line_error(r)
    assert "boom" in line and "\x1b" not in r.stderr.decode() and "\x07" not in r.stderr.decode()
