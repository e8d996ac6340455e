"""An MCP server for the tests, on the official SDK: `python tests/mcp_server.py
[garbage] [http PORT] [tools=A,B] [daemon=PIDFILE] [stderr=MB]` serves stdio (after
junk lines on stdout with `garbage`), or streamable HTTP on 127.0.0.1:PORT. Its tools
behave well and badly on demand; `tools=` adds tools of those names (each answers
"NAME of SERVER-LABEL", the label being the last argument), `daemon=` leaves a
double-forked, session-leading grandchild (its pid written to PIDFILE), `stderr=`
writes that many MiB to stderr first."""

from __future__ import annotations

import base64
import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image

server = MCPServer("demo")


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def crash() -> str:
    """Exit the server at once."""
    os._exit(3)


@server.tool()
def hang() -> str:
    """Never answer."""
    time.sleep(600)
    return "late"


@server.tool()
def big(mb: int) -> str:
    """Answer this many megabytes."""
    return "x" * (mb << 20)


@server.tool()
def evil() -> str:
    """Answer with escape sequences."""
    return "title \x1b]0;PWN\x07 clear \x1b[2J red \x1b[31;1m done"


@server.tool()
def picture() -> Image:
    """A 1x1 PNG."""
    return Image(data=base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="),
        format="png")


@server.tool()
def fail() -> str:
    """Raise an error."""
    raise ValueError("the tool failed on purpose")


def _extra_tools(names: str, label: str) -> None:
    for name in names.split(","):
        server.add_tool(lambda name=name: f"{name} of {label}", name=name, description=f"the tool {name}")


def _daemon(pidfile: str) -> None:
    """A grandchild in a session of its own: out of the server's process group."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(pidfile + ".tmp", pidfile)
            time.sleep(600)
        os._exit(0)


if __name__ == "__main__":
    args = sys.argv[1:]
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "tools":
            _extra_tools(value, args[-1])
        elif key == "daemon":
            _daemon(value)
        elif key == "stderr":
            chunk = ("e" * 1023 + "\n").encode()
            for _ in range(int(value) << 10):
                sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
    if "garbage" in args:
        print("this is not JSON-RPC", flush=True)
        print("{\"neither\": is this", flush=True)
    if "http" in args:
        server.run("streamable-http", host="127.0.0.1", port=int(args[args.index("http") + 1]))
    else:
        server.run("stdio")
