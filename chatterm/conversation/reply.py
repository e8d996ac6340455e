"""One reply as it streams, whatever produced it: its text, why it ended, its figures."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from chatterm.conversation.thinking import Splitter
from chatterm.records import Finish, Thought, ToolCall

if TYPE_CHECKING:
    from chatterm.tools.markup import CallParser


class Reply:
    """Iterate to get text chunks (`thinking.Thought` ones for a reasoning model's
    thinking); afterwards `text` (the answer), `thinking`, `finish`, `calls` and the
    figures tell the rest. Backends fill it in through `_take`; `n_tokens` counts
    generated tokens. With a call parser (`parse_calls`, tools on) the answer's text
    goes through it: tool calls leave the text for `calls`."""

    def __init__(self, prompt_tokens: int, thinking: bool = False):
        """`thinking`: the prompt opened a thinking block (see `thinking.opened`)."""
        self.prompt_tokens = prompt_tokens
        self.finish: Finish | None = None
        self.stopped_by: str | None = None  # the stop string that ended it (Finish.STOP)
        self.first_token_s: float | None = None  # from start to the first token
        self.elapsed_s = 0.0
        self.calls: list[ToolCall] = []  # the calls the reply made
        self.notes: list[str] = []  # what this reply has to say (a fallback a server reply took)
        self._chunks: list[str] = []
        self._thoughts: list[str] = []
        self._splitter = Splitter(inside=thinking)
        self._parser: CallParser | None = None
        self._pieces = 0  # answer pieces taken (what n_tokens counts; calls leave `_chunks`)

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def parse_calls(self, parser: CallParser) -> None:
        """Take tool calls out of the answer with `parser` (`tools.markup.CallParser`)."""
        self._parser = parser

    def _take(self, text: str) -> Sequence[str]:
        """`text` streamed: the pieces to yield, recorded as answer or thinking. Once the
        answer has started this is an append (it runs for every token)."""
        if self._splitter.answering and type(text) is str:
            if self._parser is None:
                self._chunks.append(text)
                return (text,)
            self._pieces += 1
            return self._shown(self._parser.feed(text))
        return self._record(self._splitter.feed(text))

    def _end(self) -> Sequence[str]:
        """The stream ended: what the splitter (and the call parser) held back."""
        pieces = self._record(self._splitter.finish())
        if self._parser is not None:
            pieces += self._shown(self._parser.finish())
        return pieces

    def _record(self, pieces: Iterable[str]) -> list[str]:
        out: list[str] = []
        for piece in pieces:
            if isinstance(piece, Thought):
                self._thoughts.append(piece)
                out.append(piece)
            elif self._parser is not None:
                self._pieces += 1
                out += self._shown(self._parser.feed(piece))
            else:
                self._chunks.append(piece)
                out.append(piece)
        return out

    def _shown(self, events: Iterable[str | ToolCall]) -> list[str]:
        """The parser's events: text is shown and recorded, calls are kept apart."""
        out = []
        for event in events:
            if isinstance(event, str):
                self._chunks.append(event)
                out.append(event)
            else:
                self.calls.append(event)
        return out

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    @property
    def thinking(self) -> str:
        return "".join(self._thoughts)

    @property
    def n_tokens(self) -> int:
        answer = self._pieces if self._parser is not None else len(self._chunks)
        return answer + len(self._thoughts)

    @property
    def tokens_per_s(self) -> float:
        """Tokens a second after the first (which pays for the prompt); 0 when unknown."""
        decode_s = self.elapsed_s - (self.first_token_s or 0.0)
        n = self.n_tokens - 1
        return n / decode_s if n > 0 and decode_s > 0 else 0.0
