"""What the front ends say once a reply has ended: one list, the same for the chat and
the one-shot answer, so the two never tell the same outcome differently. Each front
end only chooses where a line goes (above the prompt; stderr and the exit status)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chatterm.conversation import Finish, Turn
from chatterm.engines.base import never

ENDINGS = {Finish.CANCELLED: "reply cut: /continue resumes it",
           Finish.LENGTH: "reached max_tokens: /continue resumes it",
           Finish.CONTEXT: "the context window is full"}


@dataclass(frozen=True)
class Said:
    text: str
    # "note": for information; "ending": how the reply ended (a one-shot answer's exit
    # status says it); "error": the answer is not what was asked (a one-shot exits 1).
    kind: str = "note"
    once: bool = False  # the engine's notes: said once a chat, not after every reply


def after_reply(turn: Turn, schema: dict | None, failure: str | None = None,
                stop: Callable[[], bool] = never) -> list[Said]:
    """What to say about `turn` once it ended: messages left out to fit, the failure
    (`failure`: the engine's error, with the reply so far kept) or the ending, the
    reply's own notes, and, for a reply that had to match `schema`, where it does not
    (`stop` ends a slow pattern check)."""
    said = []
    if turn.dropped:
        said.append(Said(f"({turn.dropped} oldest messages left out to fit the context window)"))
    if failure is not None:
        said.append(Said(failure, "error"))
    elif turn.finish in ENDINGS:
        said.append(Said(f"({ENDINGS[turn.finish]})", "ending"))
    if turn.reply is not None:
        said += [Said(note, once=True) for note in turn.reply.notes]
    if schema is not None and turn.reply is not None and failure is None:
        from chatterm.structured.validate import answer_problem

        problem = answer_problem(turn.reply.text, schema, stop)
        if problem:
            said.append(Said(problem, "error"))
    return said
