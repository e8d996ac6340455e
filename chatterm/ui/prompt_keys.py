"""What the prompt does with keys beyond typing: completion of slash commands and their
arguments, Alt+Enter for a newline, Alt-←/→ through a reply's alternatives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prompt_toolkit.application import get_app
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings

from chatterm.ui import commands


class SlashCompleter(Completer):
    """Command names after '/'; after a command, what that command completes."""

    def get_completions(self, document: Document, event: Any) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            return
        name, space, arg = text[1:].partition(" ")
        if not space:
            for each in commands.COMMANDS.values():
                if each.name.startswith(name.lower()):
                    yield Completion("/" + each.name, start_position=-len(text), display_meta=each.help)
            return
        cmd = commands.COMMANDS.get(name.lower())
        if cmd is not None and cmd.complete is not None:
            yield from cmd.complete(arg)


def key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _newline(event: Any) -> None:
        """Esc+Enter / Alt+Enter inserts a newline; Enter sends."""
        event.current_buffer.insert_text("\n")

    empty = Condition(lambda: not get_app().current_buffer.text)

    @kb.add("escape", "left", filter=empty)
    def _previous_alternative(event: Any) -> None:
        """Alt-← at an empty prompt: the previous alternative (/alt prev)."""
        event.app.exit(result="/alt prev")  # a command, though not one for the history

    @kb.add("escape", "right", filter=empty)
    def _next_alternative(event: Any) -> None:
        """Alt-→ at an empty prompt: the next alternative (/alt next)."""
        event.app.exit(result="/alt next")

    return kb


def one_key(letters: str, default: str) -> KeyBindings:
    """A question answered by one key, without Enter: each of `letters` (either case)
    answers at once, Enter alone answers `default`, any other key does nothing."""
    kb = KeyBindings()

    def answer(letter: str) -> Any:
        return lambda event: event.app.exit(result=letter)

    for letter in letters:
        for key in {letter.lower(), letter.upper()}:
            kb.add(key)(answer(letter))
    kb.add("enter")(answer(default))
    kb.add("<any>")(lambda event: None)
    return kb
