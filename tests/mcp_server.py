"""An MCP server for the tests, on the official SDK: `python tests/mcp_server.py
[garbage] [http PORT]` serves stdio (after junk lines on stdout with `garbage`), or
streamable HTTP on 127.0.0.1:PORT. Its tools behave well and badly on demand."""

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


if __name__ == "__main__":
    args = sys.argv[1:]
    if "garbage" in args:
        print("this is not JSON-RPC", flush=True)
        print("{\"neither\": is this", flush=True)
    if "http" in args:
        server.run("streamable-http", host="127.0.0.1", port=int(args[args.index("http") + 1]))
    else:
        server.run("stdio")
