"""Slash commands: one registry feeds dispatch, /help and completion.

A command is a function `(ctx, arg) -> None` registered with `@command`, with an
optional completer for its argument. Commands see a `CommandContext` (the
conversation, the session, a few UI operations), never the REPL itself: conversation
changes go through `Conversation`'s operations. Quitting raises EOFError, so `/exit`
and Ctrl-D share one path.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from prompt_toolkit.completion import CompleteEvent, Completion, PathCompleter
from prompt_toolkit.document import Document
from rich.console import Console
from rich.text import Text

from chatterm import attachments, sessions
from chatterm.attachments import Attachment
from chatterm.conversation import Conversation, Finish, branches
from chatterm.errors import ChattermError
from chatterm.loader import Loaded
from chatterm.settings import SETTINGS
from chatterm.ui.render import CodeBlock
from chatterm.ui.sanitize import clean


class CommandContext(Protocol):
    """What a command may use (the REPL provides it)."""

    conversation: Conversation
    session: sessions.Session
    loaded: Loaded  # the model answering now
    code_blocks: list[CodeBlock]  # of the last reply shown
    console: Console
    attached: list[Attachment]  # files for the next message

    def cancelled(self) -> bool: ...  # Ctrl-C during the reply being shown
    def note(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def show_reply(self, chunks: Iterator[str]) -> bool: ...
    def wait_for_engine(self, loaded: Loaded) -> bool: ...
    def switch_model(self, name: str) -> None: ...
    def confirm(self, question: str) -> bool: ...
    def pull(self, name: str) -> None: ...
    def open_session(self, session: sessions.Session, keep_system: bool = False) -> None: ...
    def replay(self) -> None: ...
    def show_message(self, message: dict) -> None: ...  # a reply as the transcript shows it
    def begin_edit(self, question: int, text: str) -> None: ...  # the question, in the input, to edit
    def attached_tokens(self) -> int: ...
    def compose(self) -> str: ...  # a message written in the user's editor
    def ask(self, text: str) -> None: ...  # send a message, as typed at the prompt
    def save(self, path: Path | None = None) -> Path: ...


Completer = Callable[[str], Iterable[Completion]]
SESSIONS_SHOWN = 30  # /sessions without TEXT


@dataclass
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[CommandContext, str], None]
    complete: Completer | None = None  # completions for the argument typed so far


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str = "", complete: Completer | None = None) -> Callable:
    def register(fn: Callable[[CommandContext, str], None]) -> Callable[[CommandContext, str], None]:
        COMMANDS[name] = Command(name, usage, (fn.__doc__ or "").strip(), fn, complete)
        return fn
    return register


class UnknownCommand(ChattermError):
    pass


def dispatch(ctx: CommandContext, line: str) -> None:
    name, _, arg = line.strip().partition(" ")
    cmd = COMMANDS.get(name.lstrip("/").lower())
    if cmd is None:
        raise UnknownCommand(f"unknown command {name}; /help lists them")
    cmd.run(ctx, arg.strip())


# ---------------------------------------------------------------- completers

_paths = PathCompleter(expanduser=True)


def complete_path(arg: str) -> Iterator[Completion]:
    yield from _paths.get_completions(Document(arg, len(arg)), CompleteEvent())


def _words(arg: str, words: Iterable[tuple[str, str]]) -> Iterator[Completion]:
    for word, meta in words:
        if word.startswith(arg):
            yield Completion(word, start_position=-len(arg), display_meta=meta)


def model_names() -> list[str]:
    from chatterm.catalog import Catalog
    try:
        return sorted(Catalog.load().models)
    except ChattermError:
        return []


def complete_model(arg: str) -> Iterator[Completion]:
    return _words(arg, ((name, "") for name in model_names()))


def complete_setting(arg: str) -> Iterator[Completion]:
    name, space, value = arg.partition(" ")
    if not space:
        return _words(arg, ((s.name, s.help) for s in SETTINGS.values()))
    setting = SETTINGS.get(name)
    if setting is None or " " in value:
        return iter(())
    if setting.kind is bool:
        return _words(value, [("on", ""), ("off", ""), ("default", "as the model decides")])
    return _words(value, [("default", "the model's value"), *([("none", "random")] if setting.optional else [])])


# ---------------------------------------------------------------- conversation

@command("help")
def _help(ctx: CommandContext, arg: str) -> None:
    """Show the commands."""
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2))
    for cmd in COMMANDS.values():
        table.add_row(f"/{cmd.name} {cmd.usage}".rstrip(), cmd.help)
    table.add_row("Esc Enter", "insert a newline (Enter sends)")
    table.add_row("Ctrl-X Ctrl-E", "edit the input in $VISUAL/$EDITOR")
    table.add_row("Alt-← Alt-→", "at an empty prompt: the previous/next alternative (/alt)")
    table.add_row("Ctrl-C", "stop a reply; at the prompt, clear the line")
    table.add_row("Ctrl-D", "quit (on an empty line)")
    ctx.console.print(table)


@command("exit")
def _exit(ctx: CommandContext, arg: str) -> None:
    """Quit chatterm (the session is already saved)."""
    raise EOFError


@command("continue")
def _continue(ctx: CommandContext, arg: str) -> None:
    """Continue the last reply from where it stopped."""
    last = ctx.conversation.last_message
    if last and last["role"] == "assistant":
        finish = Finish.of(last.get("finish"))
        if finish is None or not finish.cut:
            ctx.note("the last reply was complete; continuing anyway")
    chunks = ctx.conversation.continue_reply(ctx.cancelled)
    ctx.show_reply(chunks)


@command("retry")
def _retry(ctx: CommandContext, arg: str) -> None:
    """Answer the last question again; the old reply stays as an alternative (/alt)."""
    conversation = ctx.conversation
    before = len(conversation.messages[-1].get("alternatives") or []) if conversation.messages else 0
    ctx.show_reply(conversation.retry(ctx.cancelled))
    last = conversation.last_message
    others = len(last.get("alternatives") or []) if last else 0
    if others > before:
        ctx.note(f"(alternative {others + 1} of {others + 1}: /alt N switches, Alt-←/→ too)")
        if any(v[0]["content"] == last["content"] for v in last["alternatives"]):
            ctx.note("(the same text as before: with temperature 0 every retry gives the same reply)"
                     if conversation.sampling.temperature == 0 else "(the same text as before)")


def complete_alt(arg: str) -> Iterator[Completion]:
    if " " in arg:
        return iter(())
    return _words(arg, [("next", ""), ("prev", ""), ("reply", "K N: an earlier reply"),
                        ("question", "K N: an earlier question")])


@command("alt", "[reply|question K] [N|next|prev]", complete=complete_alt)
def _alt(ctx: CommandContext, arg: str) -> None:
    """Switch to alternative N of the last reply (or of reply/question K); no N: list them."""
    conversation = ctx.conversation
    words = arg.split()
    role = {"reply": "assistant", "question": "user"}.get(words[0].lower()) if words else None
    if role is not None:
        if len(words) < 2 or not words[1].isdigit():
            raise ChattermError("usage: /alt [reply|question K] [N|next|prev]")
        i, words = conversation.fork(role, int(words[1])), words[2:]
    else:
        i = conversation.fork()
    if len(words) > 1:
        raise ChattermError("usage: /alt [reply|question K] [N|next|prev]")
    every = branches.versions(conversation.messages, i)
    current = branches.current_version(conversation.messages[i])
    what = branches.position(conversation.messages, i)
    if not words:
        from chatterm.ui.session_views import fit

        ctx.note(f"{what} has {len(every)} versions:")
        for number, version in enumerate(every, 1):
            marks = sessions.rating_text(version[0])
            mark = "›" if number == current else " "
            ctx.note(f"{mark} {number}  {fit(version[0]['content'], 60)}{'  ' + fit(marks, 40) if marks else ''}")
        ctx.note("/alt N switches (Alt-←/→ at an empty prompt too)")
        return
    steps = {"next": current + 1, "prev": current - 1}
    try:
        number = steps[words[0]] if words[0] in steps else int(words[0])
    except ValueError:
        raise ChattermError("usage: /alt [reply|question K] [N|next|prev]") from None
    if not 1 <= number <= len(every):
        raise ChattermError(f"{what} has {len(every)} versions; this is {current}")
    conversation.choose(i, number)
    ctx.note(f"{what}: version {number} of {len(every)}")
    for message in conversation.messages[i:]:  # the conversation from there on, as it now goes
        if message["role"] == "user":
            ctx.console.print(Text("› " + clean(message["content"]), style="bold"))
        else:
            ctx.show_message(message)


@command("edit", "[N|last] [TEXT]")
def _edit(ctx: CommandContext, arg: str) -> None:
    """No N: write a message in $VISUAL/$EDITOR, sent when saved. N (or last): ask
    question N again, edited in the input (Ctrl-X Ctrl-E: in the editor) or as TEXT;
    the old question and its replies stay an alternative."""
    conversation = ctx.conversation
    if not arg:
        text = ctx.compose()
        if text.strip():
            ctx.ask(text)
        else:
            ctx.note("(nothing saved: nothing sent)")
        return
    asked = branches.count(conversation.messages, "user")
    if not asked:
        raise ChattermError("there is no question to edit yet")
    first, _, rest = arg.partition(" ")
    if first == "last":
        first = str(asked)
    if not first.isdigit():
        raise ChattermError("usage: /edit [N|last] [TEXT]; /edit alone opens your editor")
    number, text = int(first), rest.strip()
    if not 1 <= number <= asked:
        raise ChattermError(f"no question {number}: this conversation has {asked}")
    if text:
        ctx.show_reply(conversation.edit(number, text, ctx.cancelled))
        return
    i = branches.index_of(conversation.messages, "user", number)
    ctx.begin_edit(number, conversation.messages[i]["content"])


def _rating(ctx: CommandContext, arg: str, rating: str | None) -> None:
    first, _, rest = arg.partition(" ")
    number, note = (int(first.lstrip("#")), rest.strip()) if first.lstrip("#").isdigit() else (None, arg)
    number = ctx.conversation.rate(number, rating, note)
    if rating is None:
        ctx.note(f"reply {number}: rating removed")
    else:
        message = ctx.conversation.messages[branches.index_of(ctx.conversation.messages, "assistant", number)]
        ctx.note(f"reply {number}: {sessions.rating_text(message)}")


@command("good", "[N] [NOTE]")
def _good(ctx: CommandContext, arg: str) -> None:
    """Rate the last reply (or reply N) good, with an optional note."""
    _rating(ctx, arg, "good")


@command("bad", "[N] [NOTE]")
def _bad(ctx: CommandContext, arg: str) -> None:
    """Rate the last reply (or reply N) bad, with an optional note."""
    _rating(ctx, arg, "bad")


@command("unrate", "[N]")
def _unrate(ctx: CommandContext, arg: str) -> None:
    """Remove the rating of the last reply (or reply N)."""
    if arg and not arg.lstrip("#").isdigit():
        raise ChattermError("usage: /unrate [N]")
    _rating(ctx, arg, None)


@command("undo")
def _undo(ctx: CommandContext, arg: str) -> None:
    """Remove the last question and its reply."""
    ctx.conversation.undo()
    ctx.note("removed the last exchange")


@command("new")
def _new(ctx: CommandContext, arg: str) -> None:
    """Start a new conversation (the current one stays saved)."""
    ctx.open_session(sessions.Session(name=sessions.new_name()), keep_system=True)
    ctx.note(f"new session {ctx.session.name}")


@command("system", "TEXT")
def _system(ctx: CommandContext, arg: str) -> None:
    """Set the system prompt (no TEXT: show it)."""
    if not arg:
        current = ctx.conversation.system
        ctx.note(f"system prompt: {current!r}" if current else "no system prompt")
        return
    ctx.conversation.set_system(arg)
    ctx.note("system prompt set")


def complete_role(arg: str) -> Iterator[Completion]:
    from chatterm import roles

    try:
        return _words(arg, ((r.name, r.description) for r in roles.load().values()))
    except ChattermError:
        return iter(())


@command("role", "[NAME]", complete=complete_role)
def _role(ctx: CommandContext, arg: str) -> None:
    """Use a named system prompt (no NAME: list them)."""
    from chatterm import roles

    if arg:
        role = roles.find(arg)
        ctx.conversation.set_system(role.prompt)
        ctx.note(f"role {role.name}: {role.description or role.prompt[:60]}")
        return
    current = ctx.conversation.system
    for role in roles.load().values():
        mark = "›" if role.prompt == current else " "
        ctx.note(f"{mark} {role.name:<12} {role.description}{'  (yours)' if role.source == 'yours' else ''}")
    ctx.note(f"/role NAME uses one; add your own in {roles.user_roles_toml()}")


@command("set", "[NAME VALUE]", complete=complete_setting)
def _set(ctx: CommandContext, arg: str) -> None:
    """Set a sampling setting, or 'default' for the model's (no NAME: show them)."""
    conversation = ctx.conversation
    name, _, value = arg.partition(" ")
    if not name:
        sampling = conversation.sampling
        for setting in SETTINGS.values():
            chosen = "  (set)" if setting.name in conversation.overrides else ""
            ctx.note(f"{setting.name:<15} {getattr(sampling, setting.name)}{chosen}")
        return
    setting = SETTINGS.get(name)
    if setting is None or not value.strip():
        raise ChattermError(f"usage: /set NAME VALUE, NAME one of {', '.join(SETTINGS)}")
    if value.strip().lower() == "default":
        conversation.set_sampling(name, None)
        ctx.note(f"{name} = {getattr(conversation.sampling, name)} (the model's)")
        return
    conversation.set_sampling(name, setting.parse(value))
    ctx.note(f"{name} = {getattr(conversation.sampling, name)}")
    if name == "think" and conversation.engine.state() == "ready" and not conversation.backend.think_switch:
        ctx.note("(this model's chat template has no switch for thinking: it thinks as it was trained to)")


@command("think", "[show|on|off|default]",
         complete=lambda arg: _words(arg, [("show", "the last reply's thinking"), ("on", ""), ("off", ""),
                                           ("default", "as the model decides")]))
def _think(ctx: CommandContext, arg: str) -> None:
    """Reasoning models: show the last reply's thinking, or turn thinking on or off."""
    conversation = ctx.conversation
    if arg in ("", "show"):
        last = next((m for m in reversed(conversation.messages) if m["role"] == "assistant"), None)
        text = (last or {}).get("thinking", "")
        if not text.strip():
            raise ChattermError("the last reply has no thinking")
        ctx.console.print(Text(clean(text.strip()), style="dim italic"))
        return
    _set(ctx, f"think {arg}")


@command("model", "NAME", complete=complete_model)
def _model(ctx: CommandContext, arg: str) -> None:
    """Switch to another model, keeping the conversation and your settings."""
    if not arg:
        ctx.note(f"model: {ctx.loaded.spec.name} ({ctx.loaded.engine_name}); "
                 f"available: {', '.join(model_names())} (/models for details)")
        return
    from chatterm.catalog import NotDownloaded

    try:
        ctx.switch_model(arg)
    except NotDownloaded as e:
        size = f", {e.spec.size / 1e9:.1f} GB" if e.spec.size else ""
        if not ctx.confirm(f"{e.spec.name} is not downloaded yet ({e.spec.location}{size}). Pull it now?"):
            ctx.note(f"not pulled; chatterm pull {e.spec.name} gets it later")
            return
        ctx.pull(e.spec.name)
        ctx.switch_model(arg)


@command("models")
def _models(ctx: CommandContext, arg: str) -> None:
    """The catalogue and the models on disk, and whether each fits this machine."""
    from rich.text import Text

    from chatterm.catalog import Catalog
    from chatterm.ui.model_views import rows, table

    ctx.console.print(Text(table(rows(Catalog.load()))), soft_wrap=True)


@command("stats")
def _stats(ctx: CommandContext, arg: str) -> None:
    """Context use, speed of the last reply, model and engine."""
    if not ctx.wait_for_engine(ctx.loaded):
        return
    conversation, loaded = ctx.conversation, ctx.loaded
    engine, reply = conversation.engine, conversation.last
    worker = f", worker pid {engine.pid}" if hasattr(engine, "pid") else ""
    lines = [f"model     {loaded.spec.name}  {loaded.path}",
             f"engine    {loaded.engine_name} on {engine.device}{worker}",
             *(f"settings  {note}" for note in engine.notes),
             f"context   {conversation.context_used or 0:,} / {engine.n_ctx:,} tokens",
             f"messages  {len(conversation.messages)}  (session {ctx.session.name})"]
    if reply is not None:
        lines.append(f"last      {reply.n_tokens} tokens, {reply.tokens_per_s:.1f} tok/s, first token "
                     f"after {reply.first_token_s or 0:.2f} s, prompt {reply.prompt_tokens:,} tokens")
    for line in lines:
        ctx.note(line)


# ---------------------------------------------------------------- files

@command("save", "[PATH]", complete=complete_path)
def _save(ctx: CommandContext, arg: str) -> None:
    """Save the conversation: .json (reloadable) or .md (transcript)."""
    path = Path(arg).expanduser() if arg else None
    if path is not None and path.suffix.lower() not in (".json", ".md"):
        raise ChattermError("/save writes .json or .md files")
    written = ctx.save(path)
    ctx.note(f"saved to {written}")


@command("load", "PATH|NAME", complete=complete_path)
def _load(ctx: CommandContext, arg: str) -> None:
    """Load a saved session (a .json file or a name from /sessions)."""
    if not arg:
        raise ChattermError("usage: /load PATH|NAME")
    ctx.open_session(sessions.load(arg))
    ctx.replay()


def complete_paths(arg: str) -> Iterator[Completion]:
    """The last of several paths."""
    return complete_path(arg.rsplit(" ", 1)[-1])


@command("file", "[PATH|GLOB|FOLDER...|clear]", complete=complete_paths)
def _file(ctx: CommandContext, arg: str) -> None:
    """Add text files to your next message (no PATH: list them; clear: drop them)."""
    import shlex

    if arg.strip() == "clear":
        ctx.attached.clear()
        ctx.note("no files attached")
        return
    if arg.strip():
        try:
            patterns = shlex.split(arg)
        except ValueError as e:
            raise ChattermError(f"/file: {e} (quote paths with spaces)") from None
        already = sum(len(f.text.encode("utf-8")) for f in ctx.attached)
        found = attachments.gather(patterns, already)
        ctx.attached.extend(found.files)
        for skipped in found.skipped:
            ctx.note(f"left out {skipped}")
    if not ctx.attached:
        ctx.note("no files attached: /file PATH... adds some to your next message")
        return
    if not ctx.wait_for_engine(ctx.loaded):
        ctx.note(f"{len(ctx.attached)} files attached (counted once the model has loaded)")
        return
    total = ctx.attached_tokens()
    for f in ctx.attached:
        ctx.note(f"{f.name}  {f.tokens:,} tokens")
    conversation = ctx.conversation
    after = (conversation.context_used or 0) + total
    ctx.note(f"{len(ctx.attached)} files, {total:,} tokens, go with your next message "
             f"(context {after:,} of {conversation.backend.n_ctx:,} with them)")
    if after > conversation.backend.n_ctx:
        ctx.note("(more than the context window holds: the message would be refused; /file clear)")


@command("sessions", "[TEXT]")
def _sessions(ctx: CommandContext, arg: str) -> None:
    """List saved sessions, newest first; with TEXT, find it in all of them."""
    from chatterm import archive
    from chatterm.ui.session_views import report

    paths = archive.files()
    lines, problems, count = report(paths if arg else paths[:SESSIONS_SHOWN], arg or None)
    for line in lines + problems:
        ctx.note(line)
    if arg:
        ctx.note(f"{count}; /load NAME opens one")
    elif len(paths) > SESSIONS_SHOWN:
        ctx.note(f"the newest {SESSIONS_SHOWN} of {len(paths)}; chatterm sessions lists them all")


@command("copy", "[N]")
def _copy(ctx: CommandContext, arg: str) -> None:
    """Copy code block N of the last reply (default: the last block)."""
    blocks = ctx.code_blocks
    if not blocks:
        raise ChattermError("the last reply has no code blocks")
    try:
        index = int(arg) if arg else len(blocks)
    except ValueError:
        raise ChattermError("usage: /copy [N]") from None
    if not 1 <= index <= len(blocks):
        raise ChattermError(f"no code block {index}; the last reply has {len(blocks)}")
    how = copy_to_clipboard(blocks[index - 1].code)
    ctx.note(f"copied code block {index} ({how})")


def copy_to_clipboard(text: str) -> str:
    for tool in (["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "-b", "-i"], ["pbcopy"]):
        if shutil.which(tool[0]):
            try:
                subprocess.run(tool, input=text.encode(), check=True, timeout=5)
                return tool[0]
            except (OSError, subprocess.SubprocessError):
                continue
    # OSC 52: the terminal sets its clipboard. chatterm writes this sequence itself; model
    # text never can (sanitize.clean turns ESC into a visible character).
    sys.stdout.write(f"\x1b]52;c;{base64.b64encode(text.encode()).decode()}\x07")
    sys.stdout.flush()
    return "OSC 52"
