"""Commands on tools: /tools turns them on and off and lists them, /tool shows a call
and its result whole."""

from __future__ import annotations

from collections.abc import Iterator

from prompt_toolkit.completion import Completion
from rich.text import Text

from chatterm.errors import ChattermError
from chatterm.ui.commands.registry import CommandContext, command, complete_words


def complete_tools(arg: str) -> Iterator[Completion]:
    from chatterm.tools.builtin import BUILTIN

    words = arg.split(" ")
    if len(words) == 1:
        return complete_words(arg, [("on", "all, or the ones named"), ("off", "all, or the ones named"),
                                    *((n, t.description) for n, t in BUILTIN.items())])
    return complete_words(words[-1], ((n, t.description) for n, t in BUILTIN.items()))


@command("tools", "[on|off] [NAME ...] | N", complete=complete_tools, aliases=("tool",))
def _tools(ctx: CommandContext, arg: str) -> None:
    """Tools the model may call, each call asked first: list them, switch them on|off
    [NAME ...], or (N, /tool N) show call N whole."""
    from chatterm.tools.builtin import BUILTIN
    from chatterm.tools.toolbox import Toolbox, select

    if arg.isdigit():
        return _show_call(ctx, arg)
    conversation = ctx.conversation
    if conversation.toolbox is None:
        conversation.toolbox = Toolbox()
    toolbox = conversation.toolbox
    words = arg.replace(",", " ").split()
    if words:
        action, names = (words[0], words[1:]) if words[0] in ("on", "off") else ("on", words)
        if action == "on":
            toolbox.enable(select(names or ["all"]))
        else:
            if names:
                select(names)  # an unknown name is refused, not ignored
            toolbox.disable(names or None)
        conversation.measure_again()
    mcp = {name: tool for name, tool in toolbox.tools.items() if name not in BUILTIN}  # MCP servers' tools
    for name, tool in {**BUILTIN, **mcp}.items():
        state = ("off" if name not in toolbox.tools else "on, runs without asking" if toolbox.runs_unasked(name)
                 else "on (MCP)" if name in mcp else "on")
        ctx.console.print(Text(f"  {name:<11} {state:<24} {tool.description[:120]}"), soft_wrap=True)
    if toolbox:
        syntax = ctx.loaded.tool_syntax if ctx.loaded.state() == "ready" else "…"
        if syntax is None:
            from chatterm.ui.hints import tools_as_text

            ctx.note(tools_as_text())
        elif syntax != "…":
            where = " (the server's parser first)" if syntax == "server" else " (the model's template)"
            ctx.note(f"calls are read in the {syntax} syntax{where}")


def _show_call(ctx: CommandContext, arg: str) -> None:
    """Tool call N of this conversation whole: its arguments and result."""
    from chatterm.ui import tool_views

    messages = ctx.conversation.records()
    results = [i for i, m in enumerate(messages) if m.role == "tool"]
    if not results:
        raise ChattermError("no tool has been called in this conversation")
    number = int(arg)
    if not 1 <= number <= len(results):
        raise ChattermError(f"no tool call {number}: this conversation has {len(results)}")
    result = messages[results[number - 1]]
    call = tool_views.find_call(messages, results[number - 1])
    from chatterm.ui.sanitize import visible

    ctx.note(f"▸ call {number}: {visible(result.name or '?')} · {result.summary}")
    if call is not None:
        from chatterm.tools.builtin import BUILTIN

        toolbox = ctx.conversation.toolbox
        tool = (toolbox.tools.get(call.name) if toolbox else None) or BUILTIN.get(call.name)
        key = getattr(tool, "headline", "")
        for text in (tool_views.body(call, key), *tool_views.others(call, key)):
            ctx.console.print(Text(visible(text)), soft_wrap=True)
    ctx.note("result:")
    ctx.console.print(Text(visible(result.content)), soft_wrap=True)


@command("mcp", "[restart NAME]")
def _mcp(ctx: CommandContext, arg: str) -> None:
    """MCP servers: their state and tools (or why they failed); restart NAME starts one again."""
    from chatterm.tools.mcp_config import default_path
    from chatterm.tools.mcp_hub import INSTALL, sdk_installed
    from chatterm.ui import mcp_servers

    hub = ctx.mcp
    if hub is None:
        if not sdk_installed():
            raise ChattermError(INSTALL)
        raise ChattermError(f"no MCP servers configured: add them to {default_path()} (the mcpServers format "
                            "of Claude Desktop and Cursor) or give --mcp FILE")
    words = arg.split()
    if words[:1] == ["restart"]:
        if len(words) != 2:
            raise ChattermError("usage: /mcp restart NAME")
        from chatterm.ui.interrupt import ctrl_c_cancels

        ctx.note(f"restarting {words[1]}… (Ctrl-C stops waiting)")
        with ctrl_c_cancels() as stop:
            hub.restart(words[1], stop)
            hub.wait_settled(cancelled=stop)
    elif words:
        raise ChattermError("usage: /mcp [restart NAME]")
    for line in mcp_servers.describe(hub):
        ctx.console.print(Text(line), soft_wrap=True)


@command("check", "[on|off|clear] | EXPR")
def _check(ctx: CommandContext, arg: str) -> None:
    """Code answers checked on the question's examples and your asserts: add one
    (EXPR: `f(3) == 6`), clear them, or switch checking on|off; alone, what is checked."""
    from chatterm.checking.user import parse
    from chatterm.conversation.verify import Checking

    conversation = ctx.conversation
    word = arg.strip()
    if word == "off":
        conversation.checking = None
    elif word in ("on", "clear"):
        conversation.checking = Checking() if word == "clear" or conversation.checking is None \
            else conversation.checking
    elif word:
        checks = parse(word)
        if conversation.checking is None:
            conversation.checking = Checking()
        conversation.checking.user += checks
    checking = conversation.checking
    if checking is None:
        ctx.note("checking is off: /check on (or --tools python, --check FILE) checks code answers on the "
                 "question's examples")
        return
    tries = conversation.sampling.verify
    ctx.note(f"checking is on: code answers run on the question's examples, each run asked first; "
             f"a failing answer gets up to {tries} fresh sample{'s' if tries != 1 else ''} (/set verify N)")
    from chatterm.checking.program import Check

    for number, source in enumerate(checking.user, 1):
        ctx.note(f"  {number}. {Check.user(source).shown}")
