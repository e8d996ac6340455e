"""What the chat shows above the prompt: questions and replies as the transcript keeps
them (a resumed session, /alt), notes and errors. Notes and errors are one logical
line each, wrapped by the terminal rather than broken by rich: a message copied from
the screen (a path, a command to run) comes out whole. The console cleans what they
say (`terminal.console`)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from chatterm import sessions
from chatterm.records import Message
from chatterm.ui.after_reply import ENDINGS
from chatterm.ui.render import CodeBlock, StreamRenderer

REPLAYED = 20  # messages of a resumed session shown again (the newest)


class Transcript:
    def __init__(self, console: Console):
        self.console = console
        self.code_blocks: list[CodeBlock] = []  # of the last reply shown (/copy)

    def note(self, text: str) -> None:
        self.console.print(Text(text, style="dim"), soft_wrap=True)

    def error(self, text: str) -> None:
        self.console.print(Text(f"error: {' '.join(text.split())}", style="bold red"), soft_wrap=True)

    def question(self, text: str) -> None:
        self.console.print(Text("› " + text, style="bold"))

    def message(self, message: Message, last: bool = True) -> None:
        """A reply as the transcript shows it: rendered, how it ended when it was cut
        (as the live chat said it), then its rating and versions. `last`: no reply
        follows it (/continue can resume it)."""
        if message.thinking:
            self.note(f"▸ thought ({len(message.thinking.split())} words) · /think show")
        renderer = StreamRenderer(self.console)
        renderer.feed(message.content)
        renderer.finish()
        self.code_blocks = renderer.code_blocks
        ending = ENDINGS.get(message.finish) if message.finish is not None else None
        if ending:
            self.note(f"({ending if last else ending.split(':')[0]})")
        versions = message.versions_text
        marks = [message.rating.text if message.rating else "", message.check_text,
                 versions and f"{versions} (/alt)", message.adapters_text]
        if any(marks):
            self.note("  ·  ".join(m for m in marks if m))

    def replay(self, session: sessions.Session) -> None:
        """The newest messages of `session` again (a long one is not replayed whole:
        its file holds it all)."""
        stored = session.messages
        first = max(0, len(stored) - REPLAYED)
        if first:
            self.note(f"… {first:,} earlier messages (in {session.path})")
        calls = sum(1 for m in stored[:first] if Message.of(m).role == "tool")
        messages = [Message.of(m) for m in stored]
        for i, m in enumerate(messages[first:], first):
            if m.role == "user":
                self.question(m.content)
            elif m.role == "assistant":
                self.message(m, last=i == len(messages) - 1)
            elif m.role == "tool":
                calls += 1
                self.tool_result(messages, i, calls)
            elif m.role == "summary":
                self.note(f"▸ the turns above are summarized for the model ({len(m.content.split())} words) · "
                          "/compact show")
        self.note(f"session {session.name}: {len(messages):,} messages")

    def tool_result(self, messages: list[Message], i: int, number: int) -> None:
        """Tool call `number`, whose result is `messages[i]`, as one collapsed line."""
        from chatterm.tools.builtin import BUILTIN
        from chatterm.ui import tool_views

        result = messages[i]
        call = tool_views.find_call(messages, i)
        name = result.name or (call.name if call else "?")
        tool = BUILTIN.get(name)
        self.note(tool_views.collapsed(name, call.arguments if call else {}, result.summary, number,
                                       tool.headline if tool else ""))
