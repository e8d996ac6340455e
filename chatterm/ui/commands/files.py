"""Commands that read or write files: /file, /save, /load, /sessions, /copy."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from prompt_toolkit.completion import Completion

from chatterm import attachments, sessions
from chatterm.errors import ChattermError
from chatterm.sessions import archive
from chatterm.ui.commands.registry import CommandContext, command, complete_path
from chatterm.units import count

SESSIONS_SHOWN = 30  # /sessions without TEXT


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
        ctx.note(f"{count(len(ctx.attached), 'file')} attached (counted once the model has loaded)")
        return
    total = ctx.attached_tokens()
    for f in ctx.attached:
        ctx.note(f"{f.name}  {f.tokens:,} tokens")
    after = (ctx.conversation.measure() or 0) + total
    ctx.note(f"{count(len(ctx.attached), 'file')}, {total:,} tokens, go with your next message "
             f"(context {after:,} of {ctx.loaded.n_ctx:,} with them)")
    if after > ctx.loaded.n_ctx:
        ctx.note("(more than the context window holds: the message would be refused; /file clear)")


@command("sessions", "[TEXT]")
def _sessions(ctx: CommandContext, arg: str) -> None:
    """List saved sessions, newest first; with TEXT, find it in all of them."""
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
    if how == "OSC 52":  # the terminal may ignore it, and chatterm cannot tell
        tmux = " (in tmux: set -g set-clipboard on)" if os.environ.get("TMUX") else ""
        ctx.note(f"sent code block {index} to the terminal's clipboard (OSC 52); a terminal that ignores "
                 f"OSC 52 copies nothing{tmux}; wl-copy, xclip or xsel copy for sure")
    else:
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
    from chatterm.ui import terminal

    terminal.control(f"\x1b]52;c;{base64.b64encode(text.encode()).decode()}\x07")
    return "OSC 52"
