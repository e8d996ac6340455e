"""Slash commands: one registry feeds dispatch, /help and completion.

A command is a function `(repl, arg) -> None` registered with `@command`. Quitting
raises EOFError, so `/exit` and Ctrl-D share one path.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from chatterm import generation, sessions
from chatterm.errors import ChattermError

if TYPE_CHECKING:
    from chatterm.repl import Repl


@dataclass
class Command:
    name: str
    usage: str
    help: str
    run: Callable[["Repl", str], None]
    takes_path: bool = False


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str = "", takes_path: bool = False) -> Callable:
    def register(fn: Callable[["Repl", str], None]) -> Callable[["Repl", str], None]:
        COMMANDS[name] = Command(name, usage, (fn.__doc__ or "").strip(), fn, takes_path)
        return fn
    return register


class UnknownCommand(ChattermError):
    pass


def dispatch(repl: "Repl", line: str) -> None:
    name, _, arg = line.strip().partition(" ")
    cmd = COMMANDS.get(name.lstrip("/").lower())
    if cmd is None:
        raise UnknownCommand(f"unknown command {name}; /help lists them")
    cmd.run(repl, arg.strip())


# ---------------------------------------------------------------- conversation

@command("help")
def _help(repl: "Repl", arg: str) -> None:
    """Show the commands."""
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2))
    for cmd in COMMANDS.values():
        table.add_row(f"/{cmd.name} {cmd.usage}".rstrip(), cmd.help)
    table.add_row("Esc Enter", "insert a newline (Enter sends)")
    table.add_row("Ctrl-C", "stop a reply; at the prompt, clear the line")
    table.add_row("Ctrl-D", "quit (on an empty line)")
    repl.console.print(table)


@command("exit")
def _exit(repl: "Repl", arg: str) -> None:
    """Quit chatterm (the session is already saved)."""
    raise EOFError


@command("continue")
def _continue(repl: "Repl", arg: str) -> None:
    """Continue the last reply from where it stopped."""
    last = repl.chat.messages[-1] if repl.chat.messages else None
    if not last or last["role"] != "assistant":
        raise ChattermError("there is no reply to continue")
    if last.get("finish") not in generation.CUT:
        repl.note("the last reply was complete; continuing anyway")
    repl.stream(repl.chat.continue_reply(repl.cancel_flag()))


@command("retry")
def _retry(repl: "Repl", arg: str) -> None:
    """Generate the last reply again."""
    msgs = repl.chat.messages
    if not msgs or msgs[-1]["role"] != "assistant":
        raise ChattermError("there is no reply to retry")
    msgs.pop()
    question = msgs.pop()["content"]
    repl.ask(question)


@command("undo")
def _undo(repl: "Repl", arg: str) -> None:
    """Remove the last question and its reply."""
    msgs = repl.chat.messages
    if msgs and msgs[-1]["role"] == "assistant":
        msgs.pop()
    if msgs and msgs[-1]["role"] == "user":
        msgs.pop()
        repl.save()
        repl.note("removed the last exchange")
    else:
        raise ChattermError("nothing to undo")


@command("new")
def _new(repl: "Repl", arg: str) -> None:
    """Start a new conversation (the current one stays saved)."""
    repl.start_session(sessions.Session(name=sessions.new_name()), keep_system=True)
    repl.note(f"new session {repl.session.name}")


@command("system", "TEXT")
def _system(repl: "Repl", arg: str) -> None:
    """Set the system prompt (no TEXT: show it)."""
    msgs = repl.chat.messages
    current = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else None
    if not arg:
        repl.note(f"system prompt: {current!r}" if current else "no system prompt")
        return
    if current is not None:
        msgs[0]["content"] = arg
    else:
        msgs.insert(0, {"role": "system", "content": arg})
    repl.save()
    repl.note("system prompt set")


@command("set", "PARAM VALUE")
def _set(repl: "Repl", arg: str) -> None:
    """Set temperature, top_k, top_p, repeat_penalty, max_tokens or seed."""
    name, _, value = arg.partition(" ")
    kinds = {"temperature": float, "top_k": int, "top_p": float, "repeat_penalty": float,
             "max_tokens": int, "seed": int}
    if name not in kinds or not value.strip():
        current = ", ".join(f"{k}={getattr(repl.chat.sampling, k)}" for k in kinds)
        raise ChattermError(f"usage: /set PARAM VALUE ({current})")
    try:
        parsed = kinds[name](value.strip())
    except ValueError:
        raise ChattermError(f"{name} must be a {kinds[name].__name__}") from None
    if parsed < 0 or (name == "max_tokens" and parsed < 1) or (name == "top_p" and parsed > 1):
        raise ChattermError(f"{name} = {value.strip()} is out of range")
    repl.chat.sampling = repl.chat.sampling.updated(**{name: parsed})
    repl.note(f"{name} = {parsed}")


@command("model", "NAME")
def _model(repl: "Repl", arg: str) -> None:
    """Switch to another model, keeping the conversation."""
    if not arg:
        from chatterm.catalog import Catalog
        names = ", ".join(sorted(Catalog.load().models))
        repl.note(f"model: {repl.loaded.spec.name} ({repl.loaded.engine_name}); available: {names}")
        return
    repl.switch_model(arg)


@command("stats")
def _stats(repl: "Repl", arg: str) -> None:
    """Context use, speed of the last reply, model and engine."""
    chat, gen = repl.chat, repl.chat.last
    if not repl.wait_for_engine(chat, f"loading {repl.loaded.spec.name}…"):
        return
    engine = chat.engine
    worker = f", worker pid {engine.pid}" if hasattr(engine, "pid") else ""
    lines = [f"model     {repl.loaded.spec.name}  {repl.loaded.path}",
             f"engine    {repl.loaded.engine_name} on {engine.device}{worker}",
             *(f"settings  {note}" for note in engine.notes),
             f"context   {chat.context_used:,} / {engine.n_ctx:,} tokens",
             f"messages  {len(chat.messages)}  (session {repl.session.name})"]
    if gen is not None:
        lines.append(f"last      {len(gen.tokens)} tokens, {gen.tokens_per_s:.1f} tok/s, "
                     f"first token after {gen.first_token_s or 0:.2f} s, prompt {len(gen.prompt):,} tokens")
    for line in lines:
        repl.note(line)


# ---------------------------------------------------------------- files

@command("save", "[PATH]", takes_path=True)
def _save(repl: "Repl", arg: str) -> None:
    """Save the conversation: .json (reloadable) or .md (transcript)."""
    path = Path(arg).expanduser() if arg else None
    if path is not None and path.suffix.lower() not in (".json", ".md"):
        raise ChattermError("/save writes .json or .md files")
    written = repl.save(path)
    repl.note(f"saved to {written}")


@command("load", "PATH|NAME", takes_path=True)
def _load(repl: "Repl", arg: str) -> None:
    """Load a saved session (a .json file or a name from /sessions)."""
    if not arg:
        raise ChattermError("usage: /load PATH|NAME")
    session = sessions.load(arg)
    repl.start_session(session)
    repl.replay()


@command("sessions")
def _sessions(repl: "Repl", arg: str) -> None:
    """List saved sessions, newest first."""
    from datetime import datetime

    items = sessions.listing()
    if not items:
        repl.note("no saved sessions")
    for name, mtime, first in items[:30]:
        stamp = datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M")
        repl.note(f"{name:<24} {stamp}  {first}")


@command("copy", "[N]")
def _copy(repl: "Repl", arg: str) -> None:
    """Copy code block N of the last reply (default: the last block)."""
    blocks = repl.code_blocks
    if not blocks:
        raise ChattermError("the last reply has no code blocks")
    try:
        index = int(arg) if arg else len(blocks)
    except ValueError:
        raise ChattermError("usage: /copy [N]") from None
    if not 1 <= index <= len(blocks):
        raise ChattermError(f"no code block {index}; the last reply has {len(blocks)}")
    how = copy_to_clipboard(blocks[index - 1].code)
    repl.note(f"copied code block {index} ({how})")


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
