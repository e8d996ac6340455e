"""One turn of a conversation as it happens: a question asked (or a reply continued or
retried) and the reply it gets.

Iterate a `Turn` for the reply's events: a `str` is answer text (the per-token event,
so it costs nothing to make), a `thinking.Thought` is a reasoning model's thinking;
tool calls will be events of their own. However the iteration ends (the reply done,
`cancel()`, an engine error, the consumer stopping), what streamed is recorded and
saved. Afterwards the turn tells what happened, so front ends never work it out from
the conversation's state:

- `recorded`: the question is in the conversation. False only when the turn was
  refused before anything was recorded (it does not fit the window): the front end
  keeps the question for the user.
- `started`: a reply began. Recorded but not started: the reply could not start, and
  an empty failed reply marks the question (/retry answers it).
- `kept`: the reply joined the conversation (a retry: as a new alternative).
- `finish`, `dropped` (oldest messages left out of the prompt to fit), `reply` (text,
  thinking and figures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from chatterm.conversation.reply import Finish, Reply
from chatterm.engines.base import never
from chatterm.records import Event, Notice


class Turn:
    def __init__(self, run: Callable[[Turn], Iterator[Event]], cancelled: Callable[[], bool] = never):
        """`run(turn)`: the conversation's generator for this turn, which fills in the
        turn's outcome as it goes; `cancelled`: another way to stop it (a caller's flag)."""
        self._run = run
        self._also_cancelled = cancelled
        self._cancelled = False
        self._events: Iterator[Event] | None = None
        self.recorded = False
        self.reply: Reply | None = None
        self.kept = False
        self.dropped = 0
        self.compacted = 0  # older messages summarized before this reply (compaction)
        self.notices: list[Notice] = []  # told by the conversation before the reply streams

    def __iter__(self) -> Iterator[Event]:
        """The conversation's generator itself: a `for` loop over a turn costs nothing
        per event over the reply's own stream."""
        if self._events is None:
            self._events = self._run(self)
        return self._events

    def __next__(self) -> Event:
        return next(iter(self))

    def cancel(self) -> None:
        """Stop the reply after its next token (what streamed is kept, marked cut)."""
        self._cancelled = True

    def cancelled(self) -> bool:
        """Checked by the engine after every token."""
        return self._cancelled or self._also_cancelled()

    def close(self) -> None:
        """Stop iterating: the reply so far is recorded and saved now."""
        if self._events is not None:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()

    @property
    def started(self) -> bool:
        return self.reply is not None

    @property
    def finish(self) -> Finish | None:
        """Why the reply ended (ERROR for one that could not start; None while it streams)."""
        if self.reply is not None:
            return self.reply.finish
        return Finish.ERROR if self.recorded else None
