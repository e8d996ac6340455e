"""One reply as it streams, whatever produced it: its text, why it ended, its figures."""

from __future__ import annotations

from enum import Enum
from typing import Iterable, Iterator, Sequence

from chatterm.conversation.thinking import Splitter, Thought


class Finish(str, Enum):
    """Why a reply ended; the value is what session files store."""

    EOG = "eog"  # the model ended its turn
    STOP = "stop"  # a stop string
    LENGTH = "length"  # max_tokens
    CONTEXT = "context"  # the context window is full
    CANCELLED = "cancelled"  # Ctrl-C
    ERROR = "error"  # the engine or server failed mid-reply (the text so far is kept)

    @property
    def cut(self) -> bool:
        """A reply `/continue` can carry on."""
        return self in (Finish.LENGTH, Finish.CANCELLED, Finish.ERROR)

    @classmethod
    def of(cls, value: object) -> "Finish | None":
        """The finish a session file stored (None when it stored none, or garbage)."""
        try:
            return cls(value)
        except ValueError:
            return None


class Reply:
    """Iterate to get text chunks (`thinking.Thought` ones for a reasoning model's
    thinking); afterwards `text` (the answer), `thinking`, `finish` and the figures tell
    the rest. Backends fill it in through `_take`; `n_tokens` counts generated tokens."""

    def __init__(self, prompt_tokens: int, thinking: bool = False):
        """`thinking`: the prompt opened a thinking block (see `thinking.opened`)."""
        self.prompt_tokens = prompt_tokens
        self.finish: Finish | None = None
        self.first_token_s: float | None = None  # from start to the first token
        self.elapsed_s = 0.0
        self._chunks: list[str] = []
        self._thoughts: list[str] = []
        self._splitter = Splitter(inside=thinking)

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError

    def _take(self, text: str) -> Sequence[str]:
        """`text` streamed: the pieces to yield, recorded as answer or thinking. Once the
        answer has started this is an append (it runs for every token)."""
        if self._splitter.answering and type(text) is str:
            self._chunks.append(text)
            return (text,)
        return self._record(self._splitter.feed(text))

    def _end(self) -> Sequence[str]:
        """The stream ended: what the splitter held back."""
        return self._record(self._splitter.finish())

    def _record(self, pieces: Iterable[str]) -> list[str]:
        pieces = list(pieces)
        for piece in pieces:
            (self._thoughts if isinstance(piece, Thought) else self._chunks).append(piece)
        return pieces

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    @property
    def thinking(self) -> str:
        return "".join(self._thoughts)

    @property
    def n_tokens(self) -> int:
        return len(self._chunks) + len(self._thoughts)

    @property
    def tokens_per_s(self) -> float:
        """Tokens a second after the first (which pays for the prompt); 0 when unknown."""
        decode_s = self.elapsed_s - (self.first_token_s or 0.0)
        n = self.n_tokens - 1
        return n / decode_s if n > 0 and decode_s > 0 else 0.0
