"""MCP servers: the official SDK's own server (tests/mcp_server.py) over stdio and
streamable HTTP, its tools called as chatterm's, every fault one line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from chatterm.errors import ConfigError
from chatterm.tools import mcp_config
from chatterm.tools.mcp_config import ServerConfig
from chatterm.tools.mcp_hub import McpHub, tool_name
from tests.helpers import raw_escapes, run
from tests.scripted_engine import write_script

SERVER = str(Path(__file__).with_name("mcp_server.py"))
never = lambda: False  # noqa: E731


def servers_alive(marker: str) -> list[str]:
    """The test server processes started with `marker` among their arguments."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return [pid for pid in out.split() if pid != str(os.getpid())]


@pytest.fixture
def hub(tmp_path):
    """A hub with the demo server (its processes marked with this test's folder)."""
    made = []

    def start(*servers: ServerConfig) -> McpHub:
        found = {"added": [], "removed": []}
        hub = McpHub(list(servers), lambda added, removed: (found["added"].extend(added),
                                                            found["removed"].extend(removed)))
        hub.found = found
        hub.start()
        hub.wait_settled()
        made.append(hub)
        return hub
    yield start
    for hub in made:
        hub.close()


def demo(tmp_path: Path, *extra: str, name: str = "demo", timeout_s: float = 30.0) -> ServerConfig:
    return ServerConfig(name, command=sys.executable, args=[SERVER, *extra, str(tmp_path)], timeout_s=timeout_s)


def tools_of(hub: McpHub) -> dict:
    return {t.name: t for s in hub.states.values() for t in s.tools}


def test_a_stdio_servers_tools_run_as_chattermss(hub, tmp_path):
    h = hub(demo(tmp_path))
    assert h.states["demo"].status == "running"
    tools = tools_of(h)
    assert {"demo__echo", "demo__add", "demo__picture"} <= set(tools)
    assert tools["demo__add"].parameters["required"] == ["a", "b"] and tools["demo__echo"].headline == "text"
    assert tools["demo__echo"].run({"text": "你好 hello"}, never).text == "你好 hello"
    assert tools["demo__add"].run({"a": 2, "b": 40}, never).text == "42"
    picture = tools["demo__picture"].run({}, never)
    assert picture.ok and picture.text.startswith("[image: image/png") and "not shown" in picture.text
    failed = tools["demo__fail"].run({}, never)
    assert not failed.ok and failed.summary.startswith("error")
    evil = tools["demo__evil"].run({}, never)
    assert "\x1b[2J" in evil.text  # the model reads it as it is; the terminal only ever gets it cleaned
    big = tools["demo__big"].run({"mb": 5}, never)
    assert len(big.text) < 70_000 and "characters left out" in big.text
    assert [t.name for t in h.found["added"]] == list(tools)


def test_a_50_mb_answer_ends_at_the_timeout_and_the_server_starts_again(hub, tmp_path):
    h = hub(demo(tmp_path, timeout_s=3))
    start = time.monotonic()
    huge = tools_of(h)["demo__big"].run({"mb": 50}, never)
    assert huge.summary == "no answer after 3 s" and time.monotonic() - start < 6
    h.wait_settled()  # the restart began before the call returned
    assert h.states["demo"].status == "running"
    assert tools_of(h)["demo__echo"].run({"text": "fresh"}, never).text == "fresh"
    assert any("restarting it" in line for line in h.news())


def test_a_hanging_call_times_out_or_stops_at_ctrl_c(hub, tmp_path):
    h = hub(demo(tmp_path, timeout_s=1))
    start = time.monotonic()
    timed = tools_of(h)["demo__hang"].run({}, never)
    assert timed.summary == "no answer after 1 s" and time.monotonic() - start < 5
    h.wait_settled()  # the restart began before the call returned  # started again after not answering
    start = time.monotonic()
    stopped = tools_of(h)["demo__hang"].run({}, lambda: time.monotonic() - start > 0.3)
    assert stopped.summary == "stopped (Ctrl-C)" and time.monotonic() - start < 3
    assert tools_of(h)["demo__echo"].run({"text": "still"}, never).text == "still"


def test_a_server_that_exits_mid_call_is_one_line_and_restarts(hub, tmp_path):
    h = hub(demo(tmp_path))
    crashed = tools_of(h)["demo__crash"].run({}, never)
    assert not crashed.ok and "the server has stopped" in crashed.text
    assert h.states["demo"].status == "failed" and any("failed" in line for line in h.news())
    assert "demo__echo" in h.found["removed"]
    h.restart("demo")
    h.wait_settled()
    assert h.states["demo"].status == "running" and tools_of(h)["demo__echo"].run({"text": "back"}, never).text == "back"


def test_faults_at_start_are_one_line_each(hub, tmp_path):
    h = hub(ServerConfig("missing", command="no-such-mcp-server-xyz"), demo(tmp_path, "garbage", name="junk"),
            ServerConfig("quits", command=sys.executable, args=["-c", "print('bye')"]))
    assert h.states["missing"].status == "failed" and "command not found" in h.states["missing"].why
    assert h.states["junk"].status == "running"  # lines that are not JSON-RPC are skipped
    assert h.states["quits"].status == "failed" and h.states["quits"].why
    assert all("\n" not in s.why for s in h.states.values())


def test_closing_leaves_no_server_running(tmp_path):
    marker = str(tmp_path)
    h = McpHub([demo(tmp_path), demo(tmp_path, name="second")], lambda a, r: None)
    h.start()
    h.wait_settled()
    assert len(servers_alive(marker)) >= 2
    h.close()
    deadline = time.monotonic() + 5
    while servers_alive(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert servers_alive(marker) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_streamable_http_server_with_a_header_from_the_environment(hub, tmp_path, monkeypatch, user_models_toml):
    port = free_port()
    server = subprocess.Popen([sys.executable, SERVER, "http", str(port), str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        config = tmp_path / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {"web": {
            "url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": "Bearer ${WEB_TOKEN}"}}}}))
        with pytest.raises(ConfigError, match=r"needs \$WEB_TOKEN"):
            mcp_config.load(config)[0].expanded()
        monkeypatch.setenv("WEB_TOKEN", "s3cret")
        h = hub(*mcp_config.load(config))
        assert h.states["web"].status == "running", h.states["web"].why
        assert tools_of(h)["web__echo"].run({"text": "over http"}, never).text == "over http"
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("text, message", [
    ("{", "not a readable MCP configuration"),
    ('{"servers": {}}', 'no "mcpServers" object'),
    ('{"mcpServers": {"x": {}}}', 'needs a "command"'),
    ('{"mcpServers": {"x": {"command": "a", "args": "b"}}}', '"args" must be a list'),
    ('{"mcpServers": {"x y": {"command": "a"}}}', "names use letters"),
    ('{"mcpServers": {"x": {"url": "ftp://h"}}}', '"url" must be an http'),
])
def test_a_bad_configuration_is_one_line(tmp_path, text, message):
    path = tmp_path / "mcp.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        mcp_config.load(path)


def test_tool_names_are_what_servers_accept():
    assert tool_name("fs", "read_file") == "fs__read_file"  # a plain pair keeps its plain name
    name = tool_name("my.server", "get time!")
    assert re.fullmatch(r"my_server__get_time__[0-9a-f]{8}", name)  # sanitized: marked by a digest
    assert len(tool_name("s" * 40, "t" * 60)) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", tool_name("s" * 40, "t" * 60))


def test_a_chat_calls_an_mcp_tool_through_approval_and_leaves_nothing_running(spawn, tmp_path):
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "chatterm" / "mcp.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"mcpServers": {"demo": {"command": sys.executable,
                                                          "args": [SERVER, str(tmp_path)]}}}))
    call = '<tool_call>\n{"name": "demo__evil", "arguments": {}}\n</tool_call>'
    env = write_script(tmp_path / "script.json", call, "The server answered.")
    child = spawn(env=env)
    child.expect(r"MCP server demo: 8 tools", timeout=30)
    child.sendline("/mcp")
    child.expect(r"demo\s+running · 8 tools: demo__echo")
    child.expect("›")
    child.sendline("ask the server")
    child.expect(r"demo__evil\? \[y\]es")
    child.sendline("y")
    child.expect(r"▸ demo__evil: \{\} · ok · 1 line  \(/tool 1\)")
    child.expect("The server answered.")
    child.expect("›")
    child.sendline("/tool 1")
    child.expect("done")
    child.expect("›")
    assert servers_alive(str(tmp_path))
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    assert not raw_escapes(child.transcript)
    assert servers_alive(str(tmp_path)) == []


def test_without_servers_no_sdk_is_imported_and_mcp_says_how_to_configure(tmp_path):
    r = run("--mcp", str(tmp_path / "missing.json"), "hi")
    assert r.returncode == 0 and "no MCP configuration at" in r.stderr.decode()
