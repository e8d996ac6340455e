"""The records every layer shares, at the bottom of chatterm (this module imports
nothing of chatterm): a message, how a reply ended, a tool call and its result, and the
events a reply streams. docs/architecture.md shows where it sits.

A session stores its messages as JSON objects (docs/sessions-format.md); `Message.of`
reads one into a `Message`, `Message.stored` writes one back. Front ends read fields of
records, never keys of stored messages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

YES, NO = "yes", "no"
ROLES = ("system", "user", "assistant", "tool", "summary")
RATINGS = ("good", "bad")
CANDIDATES = ("sample", "repair", "ran")  # how chatterm made a reply it checked (none: the model's own answer)


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
    def of(cls, value: object) -> Finish | None:
        """The finish a session file stored (None when it stored none, or garbage)."""
        try:
            return cls(value)
        except ValueError:
            return None


class Thought(str):
    """A chunk of the model's reasoning, not of its answer (a `str`, so the per-token
    stream stays plain strings)."""


@dataclass
class ToolCall:
    """A call as the model asked for it. `arguments` is None when the call did not
    parse (`error` says why); `raw` is what the model wrote for it, shown when asked."""

    name: str
    arguments: dict[str, Any] | None
    raw: str = ""
    error: str = ""
    # Nine letters and digits: Mistral's templates refuse any other id (OpenAI takes any).
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:9])
    decision: str | None = None  # YES or NO: the user's (or a pre-approval's) answer
    said_by: str = ""  # who decided when the user was not asked: "--yes run", "always (this session)"
    purpose: str = ""  # a run chatterm asks for itself (a check), said in the model's place; never stored

    def approve(self, arguments: dict[str, Any] | None = None, said_by: str = "") -> None:
        """Run it (with `arguments` in place of the model's: the user edited them)."""
        if arguments is not None:
            self.arguments = arguments
        self.decision, self.said_by = YES, said_by

    def decline(self, said_by: str = "") -> None:
        self.decision, self.said_by = NO, said_by

    def as_message(self) -> dict[str, Any]:
        """The call in a session's assistant message (and chat templates' `tool_calls`)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments if self.arguments is not None
                             else {"_unparsed": self.raw}}}

    def arguments_text(self) -> str:
        if self.arguments is None:
            return self.raw
        return json.dumps(self.arguments, ensure_ascii=False, indent=1)

    @classmethod
    def stored(cls, call: Mapping[str, Any]) -> ToolCall:
        """A session's stored call (decided: it is history)."""
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except (ValueError, RecursionError):
                arguments = {"_unparsed": arguments}
        return cls(str(function.get("name", "")), arguments if isinstance(arguments, dict) else {},
                   id=str(call.get("id", "")), decision=YES)


@dataclass
class ToolResult:
    """What running (or not running) a call gave back to the model."""

    call: ToolCall
    text: str  # what the model reads
    summary: str  # one line for the transcript: "exit 1 · 23 lines"
    ok: bool = True

    def as_message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call.id, "name": self.call.name,
                "content": self.text, "summary": self.summary}


@dataclass(frozen=True)
class Notice:
    """Something the conversation tells the user mid-turn (older turns compacted, the
    tool-call limit reached)."""

    text: str


@dataclass
class CheckResult:
    """A reply's code run on the checks of its question (its examples, the user's
    asserts): how many passed, in how long, and the first failure."""

    passed: int
    total: int
    seconds: float
    failure: str = ""  # the first failure, one line ("" when all passed)
    mechanical: str = ""  # a failure the code alone causes (SyntaxError, NameError, timeout, ...); not stored
    trace: str = field(default="", repr=False)  # the output behind the failure (a repair turn's); not stored

    @property
    def ok(self) -> bool:
        return self.passed == self.total

    @property
    def mark(self) -> str:
        """`✓ 3/3` or `✗ 1/3`."""
        return f"{'✓' if self.ok else '✗'} {self.passed}/{self.total}"

    def line(self) -> str:
        """What the chat says under the reply: `examples 3/3 pass (0.2 s)`, or the failure."""
        if self.ok:
            return f"examples {self.passed}/{self.total} pass ({self.seconds:.1f} s)"
        return f"examples {self.passed}/{self.total} pass: {self.failure}"

    def stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed, "total": self.total, "seconds": round(self.seconds, 3)}
        if self.failure:
            out["failure"] = self.failure
        return out

    @classmethod
    def of(cls, stored: object) -> CheckResult | None:
        """A stored result (None: none, or not one)."""
        if not isinstance(stored, Mapping):
            return None
        passed, total, seconds = stored.get("passed"), stored.get("total"), stored.get("seconds", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**6 for v in (passed, total)) \
                or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 10**7:
            return None
        return cls(int(passed), int(total), float(seconds), str(stored.get("failure") or "")[:500])  # type: ignore


@dataclass(frozen=True)
class Checked:
    """A candidate reply checked: `label` says which ("the reply", "sample 2 of 3",
    "a repair", "the code the model ran"); `shown`: the text that now stands as the
    reply, when this candidate replaced the one shown."""

    result: CheckResult
    label: str
    shown: str | None = None

    @property
    def line(self) -> str:
        """`examples 3/3 pass (0.2 s)` under the reply; a candidate's with its label."""
        if self.label == "the reply":
            return self.result.line()
        failure = f" · {self.result.failure}" if self.result.failure else ""
        shown = " · shown in the reply's place (/alt compares)" if self.shown is not None else ""
        return f"{self.label}: {self.result.mark}{failure}{shown}"


# What iterating a reply (`conversation.Turn`) yields: answer text as plain `str` (the
# per-token event, free to make), thinking as `Thought`, then calls, results, notices,
# and the checks of a code answer.
Event = Union[str, Thought, ToolCall, ToolResult, Notice, Checked]


@dataclass(frozen=True)
class Rating:
    value: str  # one of RATINGS
    note: str = ""

    @property
    def text(self) -> str:
        """"✓ good: NOTE" / "✗ bad"."""
        return f"{'✓' if self.value == 'good' else '✗'} {self.value}{': ' + self.note if self.note else ''}"


@dataclass(frozen=True)
class AdapterUse:
    """A LoRA adapter that made a reply: its name, its file's SHA-256, its scale."""

    name: str
    sha256: str
    scale: float

    @classmethod
    def of(cls, stored: object) -> AdapterUse | None:
        if not isinstance(stored, Mapping):
            return None
        scale = stored.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            return None
        try:
            value = float(scale)
        except OverflowError:  # an integer of hundreds of digits
            return None
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return cls(str(stored.get("name", "")), str(stored.get("sha256", "")), value)

    @property
    def text(self) -> str:
        """"NAME×0.5"."""
        return f"{self.name}×{self.scale:g}"


@dataclass(frozen=True)
class Message:
    """One message of a conversation, as front ends and exports read it. Versions
    (`/retry`, `/edit`) live in the stored tree (`records_tree`): `version` is this
    one's number among `versions`."""

    role: str
    content: str
    finish: Finish | None = None  # replies: why it ended (None: not recorded, e.g. old files)
    thinking: str = ""  # replies of reasoning models
    tool_calls: tuple[ToolCall, ...] = ()  # replies that called tools
    tool_call_id: str = ""  # tool results: the call answered
    name: str = ""  # tool results: the tool
    summary: str = ""  # tool results: one line for the transcript
    rating: Rating | None = None
    adapters: tuple[AdapterUse, ...] = ()  # replies: the LoRA adapters that made it (none: the base model)
    check: CheckResult | None = None  # replies whose code chatterm checked
    candidate: str = ""  # replies chatterm sampled or repaired while checking: "sample", "repair", "ran"
    version: int = 1
    versions: int = 1

    @classmethod
    def of(cls, stored: Mapping[str, Any]) -> Message:
        """A stored message (a session file's JSON object) as a record."""
        rating = stored.get("rating")
        others = stored.get("alternatives") or []
        return cls(role=str(stored.get("role", "")), content=str(stored.get("content", "")),
                   finish=Finish.of(stored.get("finish")), thinking=str(stored.get("thinking") or ""),
                   tool_calls=tuple(ToolCall.stored(c) for c in stored.get("tool_calls") or []
                                    if isinstance(c, Mapping)),
                   tool_call_id=str(stored.get("tool_call_id") or ""), name=str(stored.get("name") or ""),
                   summary=str(stored.get("summary") or ""),
                   rating=Rating(rating, str(stored.get("note") or "")) if rating in RATINGS else None,
                   adapters=tuple(a for a in map(AdapterUse.of, _list(stored.get("adapters"))) if a is not None),
                   check=CheckResult.of(stored.get("check")),
                   candidate=str(stored.get("candidate") or "") if stored.get("candidate") in CANDIDATES else "",
                   version=int(stored.get("version", len(others) + 1)), versions=len(others) + 1)

    def stored(self) -> dict[str, Any]:
        """The message as a session file stores it (without its other versions)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.finish is not None:
            out["finish"] = self.finish.value
        if self.thinking:
            out["thinking"] = self.thinking
        if self.tool_calls:
            out["tool_calls"] = [c.as_message() for c in self.tool_calls]
        for key in ("tool_call_id", "name", "summary"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.rating is not None:
            out["rating"] = self.rating.value
            if self.rating.note:
                out["note"] = self.rating.note
        if self.adapters:
            out["adapters"] = [{"name": a.name, "sha256": a.sha256, "scale": a.scale} for a in self.adapters]
        if self.check is not None:
            out["check"] = self.check.stored()
        if self.candidate:
            out["candidate"] = self.candidate
        return out

    @property
    def adapters_text(self) -> str:
        """"lora NAME×1, OTHER×0.5" for a reply an adapter made, "" otherwise."""
        return "lora " + ", ".join(a.text for a in self.adapters) if self.adapters else ""

    @property
    def check_text(self) -> str:
        """"examples ✓ 3/3" for a reply whose code was checked ("· sample": chatterm made it)."""
        if self.check is None:
            return ""
        return f"examples {self.check.mark}" + (f" · {self.candidate}" if self.candidate else "")

    @property
    def versions_text(self) -> str:
        """"version 2 of 3" for a message with other versions, "" otherwise."""
        return f"version {self.version} of {self.versions}" if self.versions > 1 else ""


def _list(value: object) -> list:
    return value if isinstance(value, list) else []
