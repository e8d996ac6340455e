"""Streaming one reply from a local engine: token ids in, text chunks out.

Shared by both local engines and every front end. Per token the work is constant: one
incremental UTF-8 decode and a stop-string check over a window no longer than the
longest stop string, never over the whole reply.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator, Sequence

from chatterm.conversation.reply import Finish, Reply
from chatterm.engines.base import Decoding, Engine, never
from chatterm.errors import EngineError

EOG, STOP, LENGTH, CONTEXT, CANCELLED, ERROR = (Finish.EOG, Finish.STOP, Finish.LENGTH, Finish.CONTEXT,
                                                Finish.CANCELLED, Finish.ERROR)


class Generation(Reply):
    """A reply from a local engine; `tokens` are its sampled ids (the end-of-generation
    one too), which the prompt cache keeps."""

    def __init__(self, engine: Engine, prompt: Sequence[int], sampling: Decoding,
                 stop: Sequence[str] = (), cancelled: Callable[[], bool] = never, thinking: bool = False):
        super().__init__(len(prompt), thinking)
        self.engine = engine
        self.prompt = list(prompt)
        self.sampling = sampling
        self.stop = [s for s in stop if s]
        self.cancelled = cancelled
        self.tokens: list[int] = []

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> Iterator[str]:
        engine, stops = self.engine, self.stop
        room = engine.n_ctx - len(self.prompt)
        budget = min(self.sampling.max_tokens, room)  # the one place a reply's length is decided
        hold = max((len(s) for s in stops), default=1) - 1
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""  # decoded text held back: it may be the start of a stop string
        ignore_eog = self.sampling.ignore_eog
        start = time.perf_counter()
        stream = engine.generate(self.prompt, self.sampling, self.cancelled, limit=budget)
        try:
            for token in stream:
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - start
                self.tokens.append(token.id)
                if token.eog and not ignore_eog:
                    self.finish = EOG
                    break
                pending += decoder.decode(token.piece)
                if stops:
                    cut = _find_stop(pending, stops)
                    if cut is not None:
                        self.stopped_by = next(s for s in stops if pending.find(s) == cut)
                        pending = pending[:cut]
                        self.finish = STOP
                        break
                    keep = _partial_stop(pending, stops, hold)
                    out, pending = pending[:len(pending) - keep], pending[len(pending) - keep:]
                else:
                    out, pending = pending, ""
                if out:
                    yield from self._take(out)
            else:  # the stream ended: cancelled, the budget spent, or the model had nothing more
                self.finish = (CANCELLED if self.cancelled() else
                               (LENGTH if budget == self.sampling.max_tokens else CONTEXT)
                               if len(self.tokens) >= budget else EOG)
        except KeyboardInterrupt:
            self.finish = CANCELLED
        except EngineError:
            self.finish = ERROR
            raise
        finally:
            stream.close()
            self.elapsed_s = time.perf_counter() - start
        # A cut reply keeps whole characters only: the bytes of a half-generated
        # character are dropped rather than shown as U+FFFD.
        pending += decoder.decode(b"", final=False)
        if pending:
            yield from self._take(pending)
        yield from self._end()

    def run(self) -> str:
        for _ in self:
            pass
        return self.text


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _partial_stop(text: str, stops: Sequence[str], hold: int) -> int:
    """Length of the longest tail of `text` that could begin a stop string."""
    for n in range(min(hold, len(text)), 0, -1):
        tail = text[-n:]
        if any(s.startswith(tail) for s in stops):
            return n
    return 0
