"""A reply in the chat as it streams: its text rendered as Markdown, each tool call
asked (or said, when decided beforehand) and its result collapsed to one line, a
call's arguments edited on request. The REPL's loop hands it a turn; it returns
the engine failure that cut the reply, if any."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from typing import Any

from prompt_toolkit import PromptSession
from rich.console import Console
from rich.text import Text

from chatterm import branches
from chatterm.conversation import Conversation, Turn
from chatterm.errors import EngineError
from chatterm.records import YES, Checked, Event, Notice, ToolCall, ToolResult
from chatterm.ui.interrupt import ctrl_c_cancels, no_echo
from chatterm.ui.prompt_keys import key_bindings
from chatterm.ui.render import CodeBlock, StreamRenderer
from chatterm.ui.spinner import Spinner


class ReplyView:
    def __init__(self, console: Console, note: Callable[[str], None], io: dict[str, Any]):
        """`note`: a line above the prompt; `io`: prompt_toolkit's input and output, for
        the questions asked inside a reply."""
        self.console, self.note, self._io = console, note, io
        self.code_blocks: list[CodeBlock] = []  # of the last reply shown (/copy)
        self.replaced_blocks: list[CodeBlock] | None = None  # of a checked candidate shown in the reply's place

    def show(self, turn: Turn, conversation: Conversation) -> EngineError | None:
        """Render `turn` as it streams; Ctrl-C cancels it, what streamed is kept. An
        engine failure after the reply started is returned (the reply so far is
        recorded); one before it started is raised (the caller keeps the question)."""
        renderer = StreamRenderer(self.console)
        blocks: list[CodeBlock] = []
        failure: EngineError | None = None
        self.replaced_blocks = None
        spinner = Spinner(self.console)
        # What the spinner says until text comes (None: text came, no spinner).
        waiting: Callable[[], str] | None = functools.partial(_reading, turn)
        try:
            with ctrl_c_cancels(turn.cancel), no_echo():
                try:
                    events = iter(turn)
                    while True:
                        if waiting is not None:
                            spinner.start(waiting)
                        try:
                            event = next(events)
                        except StopIteration:
                            break
                        finally:
                            spinner.stop()
                        if isinstance(event, str):  # text or thinking: nearly every event
                            waiting = None
                            renderer.feed(event)
                            continue
                        renderer.finish()  # a tool call or its result: shown between the texts
                        blocks += renderer.code_blocks
                        self._event(event, turn, conversation)
                        waiting = _after(event)
                        renderer = StreamRenderer(self.console)
                finally:
                    spinner.stop()
                    turn.close()  # however this ends, the reply is recorded (and saved) now
                    renderer.finish()
        except KeyboardInterrupt:  # a second Ctrl-C during a long prompt evaluation
            pass
        except EngineError as e:
            if not turn.started:
                raise
            failure = e
        self.code_blocks = self.replaced_blocks if self.replaced_blocks is not None else blocks + renderer.code_blocks
        return failure

    def _event(self, event: Event, turn: Turn, conversation: Conversation) -> None:
        """A call to decide (asked here unless decided beforehand), a call's result
        (one collapsed line), or a notice."""
        from chatterm.ui import tool_views

        toolbox = conversation.toolbox
        if isinstance(event, ToolCall):
            if event.decision is not None:
                if event.said_by and event.decision == YES:
                    self.note(f"▸ {event.name} ({event.said_by}) · running, Ctrl-C stops it")
                return
            # Undecided calls come with tools on, or a check's run (--check without tools).
            tool = toolbox.tools.get(event.name) if toolbox else _builtin(event.name)
            answer = tool_views.ask(event, tool, self._show_plain, self.note,
                                    lambda q: self._key(q, turn), self._edit_call)
            if answer == "a" and toolbox is not None:
                toolbox.allow_always(event)
            elif answer == "a":
                event.approve()
            elif answer == "y":
                event.approve()
            else:
                event.decline("you")
            if event.decision == YES:
                self.note("  running · Ctrl-C stops it")
        elif isinstance(event, ToolResult):
            number = branches.count(conversation.messages, "tool")
            tool = toolbox.tools.get(event.call.name) if toolbox else None
            arguments = event.call.arguments if event.call.arguments is not None else event.call.raw
            self.note(tool_views.collapsed(event.call.name, arguments, event.summary, number,
                                           getattr(tool, "headline", "")))
        elif isinstance(event, Notice):
            self.note(f"({event.text})")
        elif isinstance(event, Checked):
            self.note(event.line)
            if event.shown is not None:
                renderer = StreamRenderer(self.console)
                renderer.feed(event.shown)
                renderer.finish()
                self.replaced_blocks = renderer.code_blocks

    def _show_plain(self, text: str) -> None:
        """Text as it is (a call's arguments): no Markdown, never a control sequence."""
        self.console.print(Text(text), soft_wrap=True)

    def _key(self, question: str, turn: Turn) -> str | None:
        """The user's answer to a tool call's question; None at Ctrl-C (which also
        stops the turn) or the end of input."""
        from chatterm.ui.prompt_keys import one_key

        try:  # one key answers; Enter alone is the default, no (the capital in the question)
            return self._ask(f"{question} ", key_bindings=one_key("ynaev", "n"))
        except KeyboardInterrupt:
            turn.cancel()
            return None
        except EOFError:
            return None

    def _edit_call(self, text: str) -> str | None:
        try:
            return self._ask("edit (Alt+Enter: new line, Enter: done)› ", default=text, key_bindings=key_bindings())
        except (EOFError, KeyboardInterrupt):
            return None

    def _ask(self, message: str, **kw: Any) -> str:
        """A prompt while a turn streams (a tool call's question): the turn's Ctrl-C
        handler is put back afterwards, whatever the prompt's event loop did with it, so
        a Ctrl-C during the tool that follows stops the tool, never chatterm."""
        handler = signal.getsignal(signal.SIGINT)
        try:
            return str(PromptSession(**{**self._io, **kw}).prompt(message, handle_sigint=False))
        finally:
            signal.signal(signal.SIGINT, handler)


def _reading(turn: Turn) -> str:
    """The spinner's words before a reply's first token."""
    reply = turn.reply
    tokens = getattr(reply, "prompt_tokens", 0) if reply is not None else 0
    return f"reading the prompt: {tokens:,} tokens" if tokens else "reading the prompt"


def _after(event: Event) -> Callable[[], str] | None:
    """The spinner's words while the turn works after `event` (None: it needs none)."""
    if isinstance(event, ToolCall):
        return (lambda: f"running {event.name}") if event.decision == YES else (lambda: "telling the model")
    if isinstance(event, ToolResult):
        return lambda: "reading the result"
    if isinstance(event, Notice) and "trying" in event.text:
        return lambda: event.text
    if isinstance(event, Checked):
        return lambda: "checking"
    return lambda: "working"


def _builtin(name: str) -> Any:
    from chatterm.tools.builtin import BUILTIN

    return BUILTIN.get(name)

