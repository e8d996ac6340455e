"""One answer, then exit: `chatterm "question"` or a prompt piped on stdin.

Markdown on a terminal, the plain reply text on a pipe or file: `render.styled`
decides, as it does for the REPL (plain text needs no rich, so none is imported). An engine crash is one line and exit
status 1: no restart for a single answer, unless the chat goes on afterwards (-i).
"""

from __future__ import annotations

import dataclasses
import sys

import click

from chatterm import loader, sessions
from chatterm.conversation import Conversation, Finish
from chatterm.conversation.turn import Notice
from chatterm.errors import ChattermError
from chatterm.loader import Model, RunOptions
from chatterm.records import Checked
from chatterm.ui.after_reply import after_reply
from chatterm.ui.hints import chinese_hint, schema_unheld, think_ignored
from chatterm.ui.interrupt import ctrl_c_cancels, no_echo
from chatterm.ui.render import StreamRenderer, make_console, styled


def one_shot(text: str, options: RunOptions, color: str = "auto", keep: bool = False,
             question: str | None = None, session: sessions.Session | None = None) -> tuple[Model, Conversation]:
    """`question`: the question at the end of `text` after files given with -f: the
    prompt before it is cached for the next question on the same files. `session`:
    where the question and answer are kept (its history is the answer's context);
    None: nowhere (--no-save)."""
    loaded = loader.load(dataclasses.replace(options, restart=keep))
    conversation = loader.conversation(loaded, options, session)
    # JSON is printed as it is: Markdown styling would change it.
    structured = conversation.schema is not None
    renderer = (StreamRenderer(make_console(color, sys.stdout)) if styled(color, sys.stdout) and not structured
                else StreamRenderer())
    with ctrl_c_cancels() as cancelled, no_echo():
        if not loaded.wait_ready(cancelled):
            sys.exit(130)
        if sys.stderr.isatty():  # what the engine runs on is for people, not for a script's log
            for note in loaded.notes:
                click.echo(f"chatterm: {note}", err=True)
        if conversation.think_ignored:
            click.echo(f"chatterm: {think_ignored('--think/--no-think')}", err=True)
        if conversation.schema is not None and loaded.engine_name == "ctransformers":
            click.echo(f"chatterm: {schema_unheld()}", err=True)
        if conversation.toolbox and loaded.tool_syntax is None:
            from chatterm.ui.hints import tools_as_text

            click.echo(f"chatterm: {tools_as_text()}", err=True)
        hint = chinese_hint(text, loaded.spec, "-m")
        if hint:
            click.echo(f"chatterm: {hint}", err=True)
        hub = None
        if options.mcp:  # servers for one answer: only when named, and waited for
            from chatterm.ui import mcp_servers

            hub = mcp_servers.start(conversation, options.mcp, lambda line: click.echo(f"chatterm: {line}", err=True))
            if hub is not None:
                hub.wait_settled()
                for line in hub.news():
                    if " failed" in line:
                        click.echo(f"chatterm: {line}", err=True)
        if question and not keep:
            loaded.split_before(question)
        turn = conversation.send(text, cancelled)
        declined: list[str] = []
        notices: list[str] = []  # what the turn said of itself (why it stopped calling tools)
        # A pipe gets the reply that stands once checked; a terminal sees it stream, then any replacement.
        held = conversation.checking is not None and not styled(color, sys.stdout)
        try:
            for event in turn:
                if isinstance(event, str):
                    if not held:
                        renderer.feed(event)
                elif isinstance(event, Checked):
                    click.echo(f"chatterm: {event.line}", err=True)
                    if event.shown is not None and not held:
                        renderer.finish()
                        renderer = StreamRenderer(make_console(color, sys.stdout))
                        renderer.feed(event.shown)
                else:
                    if isinstance(event, Notice):
                        notices.append(event.text)
                    _tool_event(event, declined)
            if held and conversation.messages and conversation.messages[-1]["role"] == "assistant":
                renderer.feed(conversation.messages[-1]["content"])
        finally:
            renderer.finish()  # the error line, if any, starts on a line of its own
            if hub is not None:
                hub.close()
            if session is not None and not keep:  # -i: the chat keeps it from here
                _save(conversation)
        if declined:
            names = ", ".join(dict.fromkeys(declined))
            click.echo(f"chatterm: declined {len(declined)} tool call{'s' if len(declined) > 1 else ''} "
                       f"({names}): a one-shot answer asks no one; --yes TOOL runs them", err=True)
    if not keep:
        if question and turn.finish not in (Finish.ERROR, Finish.CANCELLED):
            try:
                loaded.save_prefix()
            except Exception:  # a cache not saved costs the next answer its speed, nothing more
                pass
        loaded.close()  # the worker exits now, not whenever it notices chatterm is gone
    if turn.finish == Finish.CANCELLED:
        sys.exit(130)
    for line in after_reply(turn, conversation.schema):
        if line.kind == "ending":  # cut at a limit: said, with how to go on
            where = "chatterm -c opens the session, where /continue resumes it" if session is not None else \
                "a larger --max-tokens gives it room"
            limit = f"--max-tokens {conversation.sampling.max_tokens}" if turn.finish == Finish.LENGTH \
                else "the context window"
            click.echo(f"chatterm: the reply was cut at {limit}: {where}", err=True)
        elif line.kind == "error":
            raise ChattermError(line.text)
        else:
            click.echo(f"chatterm: {line.text}", err=True)
    missing = _no_answer(conversation, notices)
    if missing:
        raise ChattermError(f"no answer: {missing}")
    return loaded, conversation


def _no_answer(conversation: Conversation, notices: list[str]) -> str | None:
    """Why the turn ended without an answer to show (None: it has one)."""
    last = conversation.messages[-1] if conversation.messages else {}
    if last.get("role") == "assistant" and last.get("content", "").strip():
        return None
    if notices:
        return notices[-1]
    if last.get("role") == "tool":
        return "the model called tools and did not answer after them"
    return "the model's reply was empty"


def _save(conversation: Conversation) -> None:
    """The one-shot's session written (a copy when another chatterm wrote it since);
    a failure is a line, never the answer's exit status."""
    session = conversation.session
    if not any(m["role"] == "user" for m in conversation.messages):
        return
    try:
        if session.changed_elsewhere():
            was, session.name, session.stamp = session.name, sessions.free_name(session.name), None
            click.echo(f"chatterm: session {was} changed meanwhile: kept as {session.name}", err=True)
        session.save()
    except ChattermError as e:
        click.echo(f"chatterm: the session was not saved: {e}", err=True)


def _tool_event(event: object, declined: list[str]) -> None:
    """Tools without a terminal: only pre-approved calls run (the conversation decided
    those); any other is declined. What ran is said on stderr, the answer alone on stdout."""
    from chatterm.tools.calls import YES, ToolCall, ToolResult

    if isinstance(event, ToolCall) and event.decision is None:
        event.decline("no one to ask")
        declined.append(event.name)
    elif isinstance(event, ToolResult) and event.call.decision == YES:
        click.echo(f"chatterm: ▸ {event.call.name} · {event.summary}", err=True)
    elif isinstance(event, Notice):
        click.echo(f"chatterm: {event.text}", err=True)
