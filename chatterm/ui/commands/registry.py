"""The command registry: `@command` fills it; dispatch, /help and completion read it.
Commands see a `CommandContext` (the conversation, the session, a few UI operations),
never the REPL itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prompt_toolkit.completion import CompleteEvent, Completion, PathCompleter
from prompt_toolkit.document import Document
from rich.console import Console

from chatterm import sessions
from chatterm.attachments import Attachment
from chatterm.conversation import Conversation, Turn
from chatterm.errors import ChattermError
from chatterm.loader import Model
from chatterm.models.catalog import Catalog
from chatterm.records import Message
from chatterm.settings import SETTINGS
from chatterm.ui.render import CodeBlock


class CommandContext(Protocol):
    """What a command may use (the REPL provides it)."""

    conversation: Conversation
    loaded: Model  # the model answering now

    @property
    def session(self) -> sessions.Session: ...

    @property
    def code_blocks(self) -> list[CodeBlock]: ...  # of the last reply shown
    console: Console
    attached: list[Attachment]  # files for the next message
    mcp: Any  # the MCP servers' hub (`tools.mcp_hub.McpHub`), None without servers

    def note(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def show_reply(self, turn: Turn) -> None: ...  # streamed; Ctrl-C cancels it
    def wait_for_engine(self, loaded: Model) -> bool: ...
    def switch_model(self, name: str) -> None: ...
    def resize(self, n_ctx: int) -> None: ...  # the same model, another context window
    def confirm(self, question: str) -> bool: ...
    def pull(self, name: str) -> None: ...
    def open_session(self, session: sessions.Session, keep_system: bool = False) -> None: ...
    def replay(self) -> None: ...
    def show_message(self, message: Message) -> None: ...  # a reply as the transcript shows it
    def show_question(self, text: str) -> None: ...  # a question as the transcript shows it
    def begin_edit(self, question: int, text: str) -> None: ...  # the question, in the input, to edit
    def attached_tokens(self) -> int: ...
    def compose(self) -> str: ...  # a message written in the user's editor
    def ask(self, text: str) -> None: ...  # send a message, as typed at the prompt
    def save(self, path: Path | None = None) -> Path: ...


Completer = Callable[[str], Iterable[Completion]]



@dataclass
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[CommandContext, str], None]
    complete: Completer | None = None  # completions for the argument typed so far
    aliases: tuple[str, ...] = ()  # other names users type (other tools' habits)


COMMANDS: dict[str, Command] = {}
ALIASES: dict[str, str] = {}


def command(name: str, usage: str = "", complete: Completer | None = None, aliases: tuple[str, ...] = ()) -> Callable:
    def register(fn: Callable[[CommandContext, str], None]) -> Callable[[CommandContext, str], None]:
        # One line: the help shows in the completion menu and in one /help row.
        COMMANDS[name] = Command(name, usage, " ".join((fn.__doc__ or "").split()), fn, complete, aliases)
        ALIASES.update((alias, name) for alias in aliases)
        return fn
    return register


class UnknownCommand(ChattermError):
    pass


def dispatch(ctx: CommandContext, line: str) -> None:
    name, _, arg = line.strip().partition(" ")
    key = name.lstrip("/").lower()
    cmd = COMMANDS.get(ALIASES.get(key, key))
    if cmd is None:
        raise UnknownCommand(f"unknown command {name}; /help lists them")
    cmd.run(ctx, arg.strip())


# ---------------------------------------------------------------- completers

_paths = PathCompleter(expanduser=True)


def complete_path(arg: str) -> Iterator[Completion]:
    yield from _paths.get_completions(Document(arg, len(arg)), CompleteEvent())


def complete_words(arg: str, words: Iterable[tuple[str, str]]) -> Iterator[Completion]:
    for word, meta in words:
        if word.startswith(arg):
            yield Completion(word, start_position=-len(arg), display_meta=meta)


def model_names() -> list[str]:
    try:
        return sorted(Catalog.load().models)
    except ChattermError:
        return []


def complete_model(arg: str) -> Iterator[Completion]:
    return complete_words(arg, ((name, "") for name in model_names()))


def complete_setting(arg: str) -> Iterator[Completion]:
    name, space, value = arg.partition(" ")
    if not space:
        return complete_words(arg, ((s.name, s.help) for s in SETTINGS.values()))
    setting = SETTINGS.get(name)
    if setting is None or " " in value:
        return iter(())
    if setting.kind is bool:
        return complete_words(value, [("on", ""), ("off", ""), ("default", "as the model decides")])
    none = [("none", "random")] if setting.optional else []
    return complete_words(value, [("default", "the model's value"), *none])
