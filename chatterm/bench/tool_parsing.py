"""What tools cost a reply, token by token: nothing while they are off (the answer's
text is appended, as before tools existed), one marker check per token while they are
on (`tools.markup.CallParser`), and in the pipeline the same decode rate either way.
The text is the renderer bench's synthetic Markdown with code, which has the markers'
first characters ("<", "[") in it, the parser's slower path."""

from __future__ import annotations

import time

from chatterm.bench.renderer import synthetic_tokens
from chatterm.conversation.reply import Reply


class _Replay(Reply):
    """A reply fed from a list of pieces, through `Reply._take` as backends feed it."""

    def __init__(self, pieces: list[str]):
        super().__init__(0)
        self.pieces = pieces

    def run(self) -> None:
        take = self._take
        for piece in self.pieces:
            take(piece)
        self._end()


def take_ns_per_token(pieces: list[str], tools: bool) -> float:
    """Nanoseconds a token costs in the reply's answer path (thinking splitter, call
    parser when `tools`), best of three passes."""
    from chatterm.tools.markup import HERMES, CallParser

    best = float("inf")
    for _ in range(3):
        reply = _Replay(pieces)
        if tools:
            reply.parse_calls(CallParser(HERMES))
        start = time.perf_counter_ns()
        reply.run()
        best = min(best, (time.perf_counter_ns() - start) / len(pieces))
    return best


def pieces_with_calls(n: int) -> list[str]:
    """`n` tokens of synthetic text with a tool call every 500 tokens, split across tokens."""
    pieces = synthetic_tokens(n)
    call = '<tool_call>\n{"name": "run", "arguments": {"command": "pytest -q"}}\n</tool_call>'
    split = [call[i:i + 4] for i in range(0, len(call), 4)]
    out: list[str] = []
    for i, piece in enumerate(pieces):
        out.append(piece)
        if i % 500 == 499:
            out += split
    return out
