"""MCP servers for a chat: started from the configuration in the background, their
tools kept in the conversation's toolbox as they come and go, stopped at the end.
Nothing here imports the SDK (or starts anything) when no server is configured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatterm.conversation import Conversation
from chatterm.errors import ChattermError


def start(conversation: Conversation, config: str | None, note: Callable[[str], None]) -> Any:
    """The running `tools.mcp_hub.McpHub` (None: no server configured, or no SDK: said
    in one line). A configuration that does not load is one line too; the chat goes on."""
    from chatterm.tools import mcp_config

    try:
        servers = mcp_config.load(Path(config).expanduser() if config else None)
    except ChattermError as e:
        note(f"MCP: {e}")
        return None
    if not servers:
        return None
    from chatterm.tools.mcp_hub import INSTALL, McpHub, sdk_installed

    if not sdk_installed():
        note(INSTALL)
        return None
    from chatterm.tools.toolbox import Toolbox

    if conversation.toolbox is None:
        conversation.toolbox = Toolbox()

    def keep(added: list, removed: list[str]) -> None:
        toolbox = conversation.toolbox
        if toolbox is None:
            return
        if removed:
            toolbox.disable(removed)
        if added:
            toolbox.enable(added)
        conversation.measure_again()
    hub = McpHub(servers, keep)
    hub.start()
    return hub


def describe(hub: Any) -> list[str]:
    """One line a server: its state and its tools, or why it failed."""
    lines = []
    for name, state in hub.states.items():
        where = state.config.url or " ".join([state.config.command, *state.config.args])
        if state.status == "running":
            what = f"running · {len(state.tools)} tools: {', '.join(t.name for t in state.tools)}"
        elif state.status == "failed":
            what = f"failed: {state.why} (/mcp restart {name})"
        else:
            what = state.status
        lines.append(f"  {name:<14} {what}  [{where[:60]}]")
    return lines
