"""Slash commands: one registry (`registry`) feeds dispatch, /help and completion.

A command is a function `(ctx, arg) -> None` registered with `@command`, with an
optional completer for its argument. Commands see a `CommandContext` (the
conversation, the session, a few UI operations), never the REPL itself: conversation
changes go through `Conversation`'s operations. Quitting raises EOFError, so `/exit`
and Ctrl-D share one path. The modules below register their commands when imported,
in the order /help lists them.
"""

# Imported for what they register, in /help's order.
from chatterm.ui.commands import (
    chat,  # noqa: E402,F401
    files,  # noqa: E402,F401
    lora,  # noqa: E402,F401
    models,  # noqa: E402,F401
    tools,  # noqa: E402,F401
    versions,  # noqa: E402,F401
)
from chatterm.ui.commands.registry import COMMANDS, Command, CommandContext, UnknownCommand, command, dispatch

__all__ = ["COMMANDS", "Command", "CommandContext", "UnknownCommand", "command", "dispatch"]
