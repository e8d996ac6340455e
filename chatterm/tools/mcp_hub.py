"""MCP servers running beside a chat, and their tools as chatterm's own.

The servers start in the background when a chat starts (the prompt never waits for
them), each in a task of one asyncio loop on a thread of its own; their tools join the
toolbox as each server comes up, named `SERVER__TOOL` (the letters, digits, `_` and `-`
that OpenAI-compatible servers accept), with the same approval, limit, sessions and
transcript as the built-in tools. Whatever a server does (fail to start, exit
mid-call, hang, write garbage, answer 50 MB, send escape sequences) is one line and
the chat goes on: calls time out, Ctrl-C stops them, results are capped and reach the
terminal only through the console. `close` stops them all: each stdio server runs
under the reaper (`tools/reaper.py`), so its whole process tree ends with it.

The `mcp` SDK is imported only here, only when a server is configured."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import functools
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatterm import paths
from chatterm.engines.call_grammar import SchemaTooLarge, check_bounds
from chatterm.errors import ChattermError
from chatterm.tools.builtin import Done, Tool
from chatterm.tools.mcp_config import ServerConfig

START_TIMEOUT_S = 30.0  # to start and list its tools
STOP_S = 3.0  # the most stopping servers may take
RESULT_CAP = 64 << 10  # characters of a result the model reads (the start and the end)
POLL_S = 0.05
INSTALL = "MCP servers need the mcp package: pip install 'chatterm[mcp]'"


def sdk_installed() -> bool:
    return importlib.util.find_spec("mcp") is not None


@dataclass
class ServerState:
    config: ServerConfig
    status: str = "starting"  # "starting", "running", "failed", "stopped"
    why: str = ""  # why it failed
    tools: list[Tool] = field(default_factory=list)
    run: int = 0  # which start this state tells of (a restart's task must not be told by the old one's end)


_PLAIN_SERVER = re.compile(r"[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*")  # no "__": where it ends is never in doubt
_PLAIN_TOOL = re.compile(r"[A-Za-z0-9_-]+")
NAME_CAP = 64  # characters of a tool name OpenAI-compatible servers accept


def tool_name(server: str, tool: str, taken: dict[str, tuple[str, str]] | None = None) -> str:
    """The toolbox's name for `tool` of `server`, one name for one (server, tool) and
    never another's (`taken`: the names given so far, name -> (server, tool)):
    `server__tool` when that is spelled in the characters OpenAI-compatible servers
    accept, fits NAME_CAP and the server's name holds no "__" (so "a"+"b__c" and
    "a__b"+"c" cannot meet); otherwise the sanitized, cut name with a digest of the two
    names ("a.b" and "a b" stay apart)."""
    taken = {} if taken is None else taken
    whole = (server, tool)
    plain = f"{server}__{tool}"
    if _PLAIN_SERVER.fullmatch(server) and _PLAIN_TOOL.fullmatch(tool) and len(plain) <= NAME_CAP \
            and taken.get(plain, whole) == whole:
        return plain
    digest = hashlib.sha256(f"{server}\0{tool}".encode("utf-8", "surrogatepass")).hexdigest()
    base = re.sub(r"[^A-Za-z0-9_-]", "_", plain)[:NAME_CAP - 10]
    for n in range(8, len(digest) + 1):
        name = f"{base}_{digest[:n]}"[-NAME_CAP:] if len(base) + n + 1 > NAME_CAP else f"{base}_{digest[:n]}"
        if taken.get(name, whole) == whole:
            return name
    raise ValueError(f"no name left for tool {tool!r} of MCP server {server!r}")


class McpHub:
    def __init__(self, servers: list[ServerConfig], on_tools: Callable[[list[Tool], list[str]], None]):
        """`on_tools(added, removed_names)`: a server's tools came or went (called on
        the hub's thread)."""
        self.states: dict[str, ServerState] = {s.name: ServerState(s) for s in servers}
        self._on_tools = on_tools
        self._news: list[str] = []  # lines for the chat to tell, once each
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._stops: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, concurrent.futures.Future] = {}
        self._sessions: dict[str, Any] = {}
        self._names: dict[str, tuple[str, str]] = {}  # every tool name given: (server, tool), for the chat's life
        self._thread = threading.Thread(target=self._loop.run_forever, name="chatterm-mcp", daemon=True)

    def start(self) -> None:
        _quiet_sdk_logs()
        self._thread.start()
        for name in self.states:
            self._launch(name)

    def _launch(self, name: str) -> None:
        state = self.states[name]
        state.run += 1
        state.status = "starting"
        self._tasks[name] = asyncio.run_coroutine_threadsafe(self._serve(name, state.run), self._loop)

    def news(self) -> list[str]:
        """What changed since last asked (a server up with its tools, one that failed)."""
        with self._lock:
            news, self._news = self._news, []
        return news

    def _tell(self, line: str) -> None:
        with self._lock:
            self._news.append(line)

    def settled(self) -> bool:
        return all(s.status != "starting" for s in self.states.values())

    def wait_settled(self, timeout: float = START_TIMEOUT_S, cancelled: Callable[[], bool] = lambda: False) -> None:
        deadline = time.monotonic() + timeout
        while not self.settled() and time.monotonic() < deadline and not cancelled():
            time.sleep(POLL_S)

    # ------------------------------------------------------------ a server's life
    async def _serve(self, name: str, run: int) -> None:
        state = self.states[name]
        ours = lambda: state.run == run  # noqa: E731  (a restart since: the state is the new task's)
        stop = self._stops[name] = asyncio.Event()
        tools: list[Tool] = []
        try:
            import anyio

            config = state.config.expanded()
            async with AsyncExitStack() as stack:
                session = await self._connect(config, stack)
                # fail_after, not wait_for: the SDK's cancel scopes must be left in the
                # task that entered them (wait_for runs its coroutine in another), and
                # in order (so no context is entered inside this one).
                with anyio.fail_after(START_TIMEOUT_S):
                    await session.initialize()
                    listed = await session.list_tools()
                tools = self._tools(config, session, listed.tools)
                if ours():
                    self._sessions[name] = session
                    state.tools, state.status, state.why = tools, "running", ""
                    self._on_tools(tools, [])
                    self._tell(f"MCP server {name}: {len(tools)} tools ({', '.join(t.name for t in tools)})")
                await stop.wait()
                if ours() and state.status == "running":
                    state.status = "stopped"
        except asyncio.CancelledError:
            if ours():
                state.status = "stopped"
        except BaseException as e:  # any failure of one server is that server's line
            if ours():
                state.status, state.why = "failed", _why(e)
                self._tell(f"MCP server {name} failed: {state.why}")
        finally:
            if ours():
                self._sessions.pop(name, None)
                state.tools = []
            if tools and ours():
                self._on_tools([], [t.name for t in tools])

    async def _connect(self, config: ServerConfig, stack: AsyncExitStack) -> Any:
        from mcp import ClientSession

        if config.url:
            from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

            client = await stack.enter_async_context(create_mcp_http_client(headers=config.headers or None))
            streams = await stack.enter_async_context(streamable_http_client(config.url, http_client=client))
        else:

            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            from chatterm.tools.runner import reaped

            if shutil.which(config.command) is None:
                raise FileNotFoundError(f"command not found: {config.command}")
            log = stack.enter_context(_log().stderr_for(config.name))
            # Under the reaper: a daemon the server forks off ends with it, not after the chat.
            argv = reaped([config.command, *config.args])
            streams = await stack.enter_async_context(stdio_client(
                StdioServerParameters(command=argv[0], args=argv[1:], env=config.env or None,
                                      encoding_error_handler="replace"), errlog=log))
        return await stack.enter_async_context(ClientSession(streams[0], streams[1]))

    def _tools(self, config: ServerConfig, session: Any, listed: list[Any]) -> list[Tool]:
        """A server's tools as chatterm's, each under a name no other server's tool has
        (a tool listed twice is taken once)."""
        tools, seen = [], set()
        for tool in listed:
            original = str(tool.name)
            if original in seen:
                continue
            seen.add(original)
            name = tool_name(config.name, original, self._names)
            self._names[name] = (config.name, original)
            try:
                tools.append(self._tool(config, session, tool, name))
            except SchemaTooLarge as e:
                self._tell(f"MCP server {config.name}: tool {name} left out: its input schema cannot be "
                           f"bounded ({e})")
        return tools

    def _tool(self, config: ServerConfig, session: Any, tool: Any, name: str) -> Tool:
        schema = getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None) or {}
        if not isinstance(schema, dict) or schema.get("type") != "object":
            schema = {"type": "object", "properties": {}}
        check_bounds(schema)  # a grammar is made of it when the model calls
        description = " ".join(str(tool.description or "").split())[:1024] or f"{tool.name} (MCP server {config.name})"
        strings = [k for k, v in (schema.get("properties") or {}).items()
                   if isinstance(v, dict) and v.get("type") == "string"]

        def run(arguments: dict[str, Any], cancelled: Callable[[], bool]) -> Done:
            return self._call(config, session, tool.name, arguments, cancelled)
        return Tool(name, description, schema, run,
                    headline=strings[0] if strings else "")

    def _call(self, config: ServerConfig, session: Any, name: str, arguments: dict[str, Any],
              cancelled: Callable[[], bool]) -> Done:
        future = asyncio.run_coroutine_threadsafe(session.call_tool(name, arguments), self._loop)
        start = time.monotonic()
        while True:
            try:
                result = future.result(timeout=POLL_S)
                break
            except concurrent.futures.TimeoutError:
                if cancelled():
                    future.cancel()
                    return Done("[stopped by the user]", "stopped (Ctrl-C)", ok=False)
                if time.monotonic() - start > config.timeout_s:
                    # A server that does not answer in time may be stuck, or still sending
                    # (the SDK takes in one huge line in time that grows with its square):
                    # it is started again, which also ends what it was sending.
                    future.cancel()
                    self._tell(f"MCP server {config.name} did not answer within {config.timeout_s:g} s: restarting it")
                    # Starting now, as the caller sees it (`settled` waits for it); the old
                    # task is waited for on a thread of its own.
                    old = self._begin_restart(config.name)
                    threading.Thread(target=self._finish_restart, args=(config.name, old), daemon=True).start()
                    return Done(f"[no answer from MCP server {config.name} after {config.timeout_s:g} s]",
                                f"no answer after {config.timeout_s:g} s", ok=False)
            except BaseException as e:  # the server went away, or refused
                why = _why(e)
                if not self._alive(config.name):
                    why = f"the server has stopped ({why})"
                return Done(f"error: MCP server {config.name}: {why}", f"failed: {why}"[:80], ok=False)
        return _done(result)

    def _alive(self, name: str) -> bool:
        """Whether server `name`'s process (or connection) is still there; one that is
        not is marked failed, its tools leave the toolbox, and its task ends."""
        state = self.states[name]
        task = self._tasks.get(name)
        if state.status == "running" and task is not None and not task.done():
            probe = asyncio.run_coroutine_threadsafe(self._ping(name), self._loop)
            try:
                if probe.result(timeout=5):
                    return True
            except BaseException:
                pass
            state.status, state.why = "failed", "it stopped answering (exited?)"
            if state.tools:  # out of the toolbox at once: no call reaches it again
                self._on_tools([], [t.name for t in state.tools])
                state.tools = []
            self._tell(f"MCP server {name} failed: {state.why}; /mcp restart {name}")
            stop = self._stops.get(name)
            if stop is not None:
                self._loop.call_soon_threadsafe(stop.set)
        return False

    async def _ping(self, name: str) -> bool:
        session = self._sessions.get(name)
        if session is None:
            return False
        await asyncio.wait_for(session.send_ping(), 3)
        return True

    # ------------------------------------------------------------ control
    def restart(self, name: str, cancelled: Callable[[], bool] = lambda: False) -> None:
        if name not in self.states:
            raise ChattermError(f"no MCP server {name!r}; /mcp lists them")
        self._finish_restart(name, self._begin_restart(name), cancelled)

    def _begin_restart(self, name: str) -> Any:
        """Server `name` is starting again from now on: its tools leave the toolbox, the
        old task is told to stop. Returns the old task, for `_finish_restart`."""
        stop = self._stops.get(name)
        state = self.states[name]
        if state.tools:  # gone from the toolbox now, not when the old task has ended
            self._on_tools([], [t.name for t in state.tools])
        state.run += 1  # the old task's end is not this start's to tell
        state.status, state.tools = "starting", []
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        return self._tasks.get(name)

    def _finish_restart(self, name: str, task: Any, cancelled: Callable[[], bool] = lambda: False) -> None:
        """The old task ended (or given up on after STOP_S), the server launched again."""
        if task is not None:
            task.cancel()  # one still starting (never answered initialize) waits for nothing
            deadline = time.monotonic() + STOP_S
            while not task.done() and time.monotonic() < deadline and not cancelled():
                time.sleep(POLL_S)
        self._launch(name)

    def close(self, note: Callable[[str], None] = lambda line: None) -> None:
        """Every server stopped, its process tree ended, the loop's thread finished:
        within STOP_S whatever the servers do (`note` is told which are waited for,
        when that takes a moment)."""
        if not self._thread.is_alive():
            return
        for stop in list(self._stops.values()):
            self._loop.call_soon_threadsafe(stop.set)
        for name, task in self._tasks.items():
            if self.states[name].status == "starting":
                task.cancel()  # it may never answer initialize
        tasks = list(self._tasks.values())
        _, pending = concurrent.futures.wait(tasks, timeout=0.3)
        if pending:
            waited = [n for n, t in self._tasks.items() if t in pending]
            note(f"stopping MCP server{'s' if len(waited) > 1 else ''} {', '.join(waited)}…")
            # A stdio server that ignores the end of its input would have seconds of grace:
            # its reaper is told to end its tree now.
            _, pending = concurrent.futures.wait(pending, timeout=0.5)
            if pending:
                _end_reapers()
            concurrent.futures.wait(pending, timeout=STOP_S)
        for task in tasks:
            task.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=1)


def _end_reapers() -> None:
    """SIGTERM to this process's children that are reapers (`tools/reaper.py`): each
    ends the tree below it and exits."""
    from chatterm.tools.reaper import descendants
    from chatterm.tools.runner import REAPER

    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                words = f.read(4096).split(b"\0")
            if REAPER.encode() in words:
                os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def _log_path() -> Path | None:
    """The MCP log (servers' stderr, the SDK's complaints); None when its folder cannot be made."""
    path = paths.state_dir() / "mcp.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return path


def _log() -> Any:
    return _log_at(_log_path())


@functools.lru_cache(maxsize=4)
def _log_at(path: Path | None) -> Any:
    """One writer a log file (its lock keeps the chat's own writes whole)."""
    from chatterm.tools.mcp_log import CappedLog

    return CappedLog(path)


def _quiet_sdk_logs() -> None:
    """The SDK logs what servers do wrong (garbage on stdout, say) with tracebacks: into
    the MCP log, never onto the chat's terminal."""
    from chatterm.tools.mcp_log import LogHandler

    logger = logging.getLogger("mcp")
    logger.propagate = False
    if not logger.handlers:
        handler = LogHandler(_log())
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


def _done(result: Any) -> Done:
    """An MCP CallToolResult as text for the model: text as it is, images and audio
    said (never shown), an error marked; capped at RESULT_CAP (start and end kept)."""
    parts: list[str] = []
    for item in getattr(result, "content", None) or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(str(getattr(item, "text", "")))
        elif kind in ("image", "audio"):
            data = getattr(item, "data", "") or ""
            parts.append(f"[{kind}: {getattr(item, 'mime_type', None) or getattr(item, 'mimeType', '?')}, "
                         f"{len(data) * 3 // 4:,} bytes; not shown]")
        elif kind == "resource":
            resource = getattr(item, "resource", None)
            parts.append(str(getattr(resource, "text", None) or f"[resource {getattr(resource, 'uri', '?')}]"))
        else:
            parts.append(f"[{kind or 'unknown'} content]")
    text = "\n".join(parts)
    if len(text) > RESULT_CAP:
        half = RESULT_CAP // 2
        text = f"{text[:half]}\n[... {len(text) - RESULT_CAP:,} characters left out ...]\n{text[-half:]}"
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    error = bool(getattr(result, "is_error", False) or getattr(result, "isError", False))
    summary = f"{'error' if error else 'ok'} · {lines} line{'s' if lines != 1 else ''}"
    return Done(text if not error else f"error: {text}", summary, ok=not error)


def _why(error: BaseException) -> str:
    """One line for a server's failure, whatever raised it (an exception group from
    the SDK's task groups: its first leaf)."""
    group = getattr(builtins, "BaseExceptionGroup", ())
    while group and isinstance(error, group) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer within {START_TIMEOUT_S:g} s"
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
