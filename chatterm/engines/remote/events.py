"""What a server's stream means: each server-sent event as the reply's text and
thinking (`Delta`) and its end (`End`), whichever server's dialect it is in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from chatterm import surrogates
from chatterm.engines.remote.errors import RemoteError, message_detail


class Delta(NamedTuple):
    """Text of the reply as it streams (`reasoning`: of its thinking)."""

    reasoning: bool
    text: str


class CallDelta(NamedTuple):
    """A piece of a tool call the server parsed (OpenAI's streamed `tool_calls`): the
    call at `index` gains `name` and `arguments` text (JSON, split over many events)."""

    index: int  # type: ignore[assignment]  # OpenAI's field name, over tuple.index
    id: str
    name: str
    arguments: str


class End(NamedTuple):
    """The server ended the reply: "stop", "length", ... (None: it did not say)."""

    finish_reason: str | None


class SurrogateJoiner:
    """Text deltas with UTF-16 surrogate pairs made whole: a server that escapes an
    emoji as "\\ud83d" in one event and "\\ude00" in the next sends two halves of one
    character. A high half is held until the next delta of its kind; a half that stays
    alone becomes U+FFFD."""

    def __init__(self) -> None:
        self._held = {False: "", True: ""}

    def feed(self, reasoning: bool, text: str) -> Iterator[Delta]:
        text = self._held[reasoning] + text
        self._held[reasoning] = ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            self._held[reasoning], text = text[-1], text[:-1]
        text = surrogates.mend(text)
        if text:
            yield Delta(reasoning, text)

    def rest(self) -> Iterator[Delta]:
        for reasoning, held in self._held.items():
            if held:
                yield Delta(reasoning, "\ufffd")
        self._held = {False: "", True: ""}


def deltas(event: Any) -> list[tuple[bool, str]]:
    """(reasoning, text) pieces of one event: reasoning first (vLLM, SGLang and
    llama-server send `reasoning_content`, some others `reasoning`), then content."""
    if not isinstance(event, dict):
        raise RemoteError("malformed stream: an event that is not a JSON object")
    if event.get("error") is not None:  # some servers send "error": null in every event
        raise RemoteError(f"the server reported an error mid-reply{message_detail(event)}")
    choices = event.get("choices") or []
    if not choices:
        return []  # usage or keep-alive events
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta")
    if not isinstance(delta, dict):  # the completions API
        text = choice.get("text")
        return [(False, text)] if isinstance(text, str) and text else []
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    pieces = [(True, reasoning)] if isinstance(reasoning, str) and reasoning else []
    content = delta.get("content")
    return pieces + ([(False, content)] if isinstance(content, str) and content else [])


def finish_reason(event: dict) -> str | None:
    choices = event.get("choices") or []
    reason = choices[0].get("finish_reason") if choices and isinstance(choices[0], dict) else None
    return reason if isinstance(reason, str) else None


def call_deltas(event: Any) -> list[CallDelta]:
    """The tool-call pieces of one event (none from a server that parses no calls)."""
    choices = event.get("choices") if isinstance(event, dict) else None
    delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
    calls = delta.get("tool_calls") if isinstance(delta, dict) else None
    if not isinstance(calls, list):
        return []
    out = []
    for position, call in enumerate(calls):
        if not isinstance(call, dict):
            continue
        function: dict = call["function"] if isinstance(call.get("function"), dict) else {}
        index = call.get("index", position)
        out.append(CallDelta(index if isinstance(index, int) else position, _text(call.get("id")),
                             _text(function.get("name")), _text(function.get("arguments"))))
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
