"""Commands that steer the conversation: continue it, undo, start anew, its system
prompt and role, its settings, a reasoning model's thinking; help and exit."""

from __future__ import annotations

import json
from collections.abc import Iterator

from prompt_toolkit.completion import Completion
from rich.cells import cell_len
from rich.text import Text

from chatterm import roles, sessions
from chatterm.errors import ChattermError
from chatterm.settings import SETTINGS
from chatterm.ui.commands.registry import COMMANDS, CommandContext, command, complete_setting, complete_words
from chatterm.ui.sanitize import clean


@command("help", "[COMMAND]")
def _help(ctx: CommandContext, arg: str) -> None:
    """Show the commands, one line each (with COMMAND: all of its help)."""
    from rich.table import Table

    from chatterm.ui.commands.registry import ALIASES

    if arg:
        key = arg.lstrip("/").lower()
        cmd = COMMANDS.get(ALIASES.get(key, key))
        if cmd is None:
            raise ChattermError(f"no command /{key}; /help lists them")
        also = f" (also {', '.join('/' + a for a in cmd.aliases)})" if cmd.aliases else ""
        ctx.note(f"/{cmd.name} {cmd.usage}".rstrip() + also)
        ctx.note(f"  {cmd.help}")
        return
    # A command a row, its help ended at a word with "…" where the screen is too narrow
    # for all of it (/help COMMAND says all): the whole list fits a 30-row terminal
    # (/exit is said with the keys: Ctrl-D does the same).
    table = Table(show_header=False, box=None, padding=(0, 2), pad_edge=False)
    listed = [cmd for cmd in COMMANDS.values() if cmd.name != "exit"]
    names = [f"/{cmd.name} {cmd.usage}".rstrip() for cmd in listed]
    width = max(len(n) for n in names)
    room = max(20, ctx.console.width - width - 4)  # the padding between the columns: 2 + 2
    table.add_column(no_wrap=True, min_width=width)
    table.add_column(no_wrap=True)
    for name, cmd in zip(names, listed):
        table.add_row(name, _at_words(cmd.help, room))
    keys = "Esc Enter: a newline · Ctrl-C: stop a reply · Ctrl-D or /exit: quit (saved already)"
    table.add_row("keys", _at_words(keys, room))
    ctx.console.print(table)


def _at_words(text: str, room: int) -> str:
    """`text` in `room` cells, ended after a whole word with " …" when it is longer."""
    if cell_len(text) <= room:
        return text
    cut = text[:room - 1]
    cut = cut[:cut.rfind(" ")] if " " in cut else cut
    while cell_len(cut) > room - 2:
        cut = cut[:-1]
    return cut.rstrip(" ,;:(") + " …"


@command("exit", aliases=("quit", "bye", "q"))
def _exit(ctx: CommandContext, arg: str) -> None:
    """Quit chatterm (the session is already saved)."""
    raise EOFError


@command("continue")
def _continue(ctx: CommandContext, arg: str) -> None:
    """Continue the last reply from where it stopped."""
    last = ctx.conversation.record(-1) if ctx.conversation.messages else None
    if last and last.role == "assistant":
        if last.finish is None or not last.finish.cut:
            ctx.note("the last reply was complete; continuing anyway")
    ctx.show_reply(ctx.conversation.continue_reply())


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
    try:
        return complete_words(arg, ((r.name, r.description) for r in roles.load().values()))
    except ChattermError:
        return iter(())


@command("compact", "[show|WHAT TO KEEP]")
def _compact(ctx: CommandContext, arg: str) -> None:
    """Summarize the older turns with the model (the session keeps them whole); show: the summary the model sees."""
    conversation = ctx.conversation
    if arg == "show":
        ctx.note(conversation.summary or "not compacted yet: /compact summarizes the older turns")
        return
    if not ctx.wait_for_engine(ctx.loaded):
        return
    from chatterm.ui.interrupt import ctrl_c_cancels

    with ctrl_c_cancels() as stop, ctx.console.status("summarizing the older turns… (Ctrl-C stops)"):
        covered = conversation.compact(arg, cancelled=stop)
    ctx.note(f"{covered} older messages summarized: the model sees the summary in their place "
             "(/compact show; exports and the session keep them whole)")


@command("schema", "[JSON|FILE|json|off]")
def _schema(ctx: CommandContext, arg: str) -> None:
    """Answer with JSON matching a JSON Schema (json: any JSON object; off: prose again; none: show it)."""
    from chatterm.structured import schema

    conversation = ctx.conversation
    if not arg:
        ctx.note(json.dumps(conversation.schema, ensure_ascii=False) if conversation.schema is not None
                 else "no schema: replies are prose (/schema JSON|FILE, or /schema json)")
        return
    if arg == "off":
        conversation.schema = None
    else:
        conversation.schema = dict(schema.ANY_OBJECT) if arg == "json" else schema.parse(arg)
        if ctx.loaded.engine_name == "ctransformers":
            from chatterm.ui.hints import schema_unheld

            ctx.note(schema_unheld())
    conversation.measure_again()
    ctx.note("replies are prose again" if conversation.schema is None else "replies are JSON matching the schema")


@command("role", "[NAME]", complete=complete_role)
def _role(ctx: CommandContext, arg: str) -> None:
    """Use a named system prompt (no NAME: list them)."""
    if arg:
        role = roles.find(arg)
        ctx.conversation.set_system(role.prompt)
        ctx.note(f"role {role.name}: {role.description or role.prompt[:60]}")
        if role.tools:
            from chatterm.tools.toolbox import Toolbox, select

            if ctx.conversation.toolbox is None:
                ctx.conversation.toolbox = Toolbox()
            ctx.conversation.toolbox.enable(select(role.tools))
            ctx.conversation.measure_again()
            ctx.note(f"tools on: {', '.join(role.tools)} (each call is asked first; /tools off turns them off)")
        return
    current = ctx.conversation.system
    for role in roles.load().values():
        mark = "›" if role.prompt == current else " "
        ctx.note(f"{mark} {role.name:<12} {role.description}{'  (yours)' if role.source == 'yours' else ''}")
    if current and not any(role.prompt == current for role in roles.load().values()):
        ctx.note("› (your own system prompt: /system shows it)")
    ctx.note(f"/role NAME uses one; add your own in {roles.user_roles_toml()}")


@command("set", "[NAME VALUE]", complete=complete_setting)
def _set(ctx: CommandContext, arg: str) -> None:
    """Set a sampling setting, or 'default' for the model's (no NAME: show them)."""
    conversation = ctx.conversation
    name, _, value = arg.partition(" ")
    if not name:
        sampling = conversation.sampling
        for each in SETTINGS.values():
            chosen = "  (set)" if each.name in conversation.overrides else ""
            ctx.note(f"{each.name:<15} {each.show(getattr(sampling, each.name))}{chosen}")
        return
    setting = SETTINGS.get(name)
    if setting is None or not value.strip():
        raise ChattermError(f"usage: /set NAME VALUE, NAME one of {', '.join(SETTINGS)}")
    if value.strip().lower() == "default":
        conversation.set_sampling(name, None)
        ctx.note(f"{name} = {setting.show(getattr(conversation.sampling, name))} (the model's)")
        return
    conversation.set_sampling(name, setting.parse(value))
    ctx.note(f"{name} = {setting.show(getattr(conversation.sampling, name))}")
    if name == "think" and ctx.loaded.state() == "ready" and not ctx.loaded.think_switch:
        ctx.note("(this model's chat template has no switch for thinking: it thinks as it was trained to)")


@command("think", "[show|on|off|default]",
         complete=lambda arg: complete_words(arg, [("show", "the last reply's thinking"), ("on", ""), ("off", ""),
                                           ("default", "as the model decides")]))
def _think(ctx: CommandContext, arg: str) -> None:
    """Reasoning models: show the last reply's thinking, or turn thinking on or off."""
    conversation = ctx.conversation
    if arg in ("", "show"):
        last = next((m for m in reversed(conversation.records()) if m.role == "assistant"), None)
        text = last.thinking if last else ""
        if not text.strip():
            raise ChattermError("the last reply has no thinking")
        ctx.console.print(Text(clean(text.strip()), style="dim italic"))
        return
    _set(ctx, f"think {arg}")
