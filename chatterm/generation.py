"""Streaming one reply: token ids in, text chunks out.

Shared by every engine and every front end. Per token the work is constant: one
incremental UTF-8 decode and a stop-string check over a window no longer than the
longest stop string, never over the whole reply.
"""

from __future__ import annotations

import codecs
import time
from typing import Callable, Iterator, Sequence

from chatterm.engines.base import Engine, Sampling
from chatterm.errors import EngineError

# Why a reply ended. ERROR: the engine failed or died mid-reply (the text so far is kept).
EOG, STOP, LENGTH, CONTEXT, CANCELLED, ERROR = "eog", "stop", "length", "context", "cancelled", "error"
CUT = (LENGTH, CANCELLED, ERROR)  # replies /continue can carry on


class Generation:
    """Iterate to get text chunks; afterwards `text`, `tokens`, `finish` tell the rest."""

    def __init__(self, engine: Engine, prompt: Sequence[int], sampling: Sampling,
                 stop: Sequence[str] = (), cancelled: Callable[[], bool] = lambda: False):
        self.engine = engine
        self.prompt = list(prompt)
        self.sampling = sampling
        self.stop = [s for s in stop if s]
        self.cancelled = cancelled
        self.tokens: list[int] = []  # every sampled token, the end-of-generation one too
        self.finish: str | None = None
        self.first_token_s: float | None = None  # from start to the first token
        self.elapsed_s = 0.0
        self._chunks: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    @property
    def tokens_per_s(self) -> float:
        return decode_rate(len(self.tokens), self.elapsed_s, self.first_token_s)

    def __iter__(self) -> Iterator[str]:
        engine, stops = self.engine, self.stop
        room = engine.n_ctx - len(self.prompt)
        budget = min(self.sampling.max_tokens, room)
        hold = max((len(s) for s in stops), default=1) - 1
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""  # decoded text held back: it may be the start of a stop string
        ignore_eog = self.sampling.ignore_eog
        start = time.perf_counter()
        stream = engine.generate(self.prompt, self.sampling, self.cancelled) if budget > 0 else iter(())
        try:
            for token in stream:
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - start
                self.tokens.append(token)
                if engine.is_eog(token) and not ignore_eog:
                    self.finish = EOG
                    break
                pending += decoder.decode(engine.piece(token))
                if stops:
                    cut = _find_stop(pending, stops)
                    if cut is not None:
                        pending = pending[:cut]
                        self.finish = STOP
                        break
                    keep = _partial_stop(pending, stops, hold)
                    out, pending = pending[:len(pending) - keep], pending[len(pending) - keep:]
                else:
                    out, pending = pending, ""
                if out:
                    self._chunks.append(out)
                    yield out
                if len(self.tokens) >= budget:
                    self.finish = LENGTH if budget == self.sampling.max_tokens else CONTEXT
                    break
                if self.cancelled():
                    self.finish = CANCELLED
                    break
            else:  # the engine stopped: cancelled while reading the prompt, or out of room
                self.finish = CANCELLED if self.cancelled() else CONTEXT if budget <= 0 else EOG
        except KeyboardInterrupt:
            self.finish = CANCELLED
        except EngineError:
            self.finish = ERROR
            raise
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
            self.elapsed_s = time.perf_counter() - start
        # A cut reply keeps whole characters only: the bytes of a half-generated
        # character are dropped rather than shown as U+FFFD.
        pending += decoder.decode(b"", final=False)
        if pending:
            self._chunks.append(pending)
            yield pending

    def run(self) -> str:
        for _ in self:
            pass
        return self.text


def decode_rate(n_tokens: int, elapsed_s: float, first_token_s: float | None) -> float:
    """Tokens a second after the first (which pays for the prompt); 0 when unknown."""
    decode_s = elapsed_s - (first_token_s or 0.0)
    n = n_tokens - 1
    return n / decode_s if n > 0 and decode_s > 0 else 0.0


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
