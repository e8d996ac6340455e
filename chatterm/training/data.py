"""The records a training run learns from: made from saved sessions by `chatterm
export`'s own code (`sessions.datasets`), or read from a JSONL file in those formats
(TRL's conversational ones). A file's records are checked here (the sessions' were
when their files were read), so a bad file is one line naming its line, never a
traceback halfway through training.

- sft: {"messages": [...]} with at least one assistant message;
- dpo: {"prompt": [...], "chosen": [assistant...], "rejected": [assistant...]}.

A message is {"role": system|user|assistant|tool, "content": text}; an assistant's
`tool_calls` and a record's `tools` are kept as the export writes them.

`without_system` leaves system prompts out of the records: the adapter learns to
answer as the model did with them (context distillation: conventions taught with
`-s` in the sessions, an adapter that knows them with no system prompt at all)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatterm import json_input, safe_files
from chatterm.errors import InputError
from chatterm.sessions import archive, datasets

FORMATS = ("sft", "dpo")
ROLES = ("system", "user", "assistant", "tool")
MOST_BYTES = 1 << 30  # a data file larger than this is refused before it is read


@dataclass
class Records:
    format: str
    items: list[dict[str, Any]]
    source: str  # for people: "12 sessions", "data.jsonl"
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> how many (sessions only)

    def without_system(self) -> Records:
        key = "messages" if self.format == "sft" else "prompt"
        items = [{**r, key: [m for m in r[key] if m["role"] != "system"]} for r in self.items]
        for n, record in enumerate(items, 1):
            if not [m for m in record[key] if m["role"] != "assistant"]:
                raise InputError(f"{self.source}: record {n} has nothing but its system prompt before its reply")
        return Records(self.format, items, self.source, self.left_out)


def from_sessions(names: Iterable[str], fmt: str, source: str) -> Records:
    """The trusted records of the saved sessions (all, or `names`), as `chatterm export
    --format FMT --from SOURCE` writes them."""
    options = datasets.Options(fmt, source=source)
    tally = datasets.Tally()
    items: list[dict[str, Any]] = []
    read = 0
    for item in archive.read_all(archive.select(names, None, None)):
        if isinstance(item, archive.Unreadable):
            continue  # one bad file never stops the rest; `chatterm sessions` names it
        read += 1
        items += datasets.records(item.messages, options, tally)
    if not items:
        raise InputError(_none_from_sessions(fmt, source, read, tally))
    return Records(fmt, items, f"{read} session{'s' * (read != 1)}", dict(tally.skipped))


def _none_from_sessions(fmt: str, source: str, read: int, tally: datasets.Tally) -> str:
    if not read:
        return "no saved sessions to train on: chat, rate replies with /good and /bad, then train"
    judged = {"ratings": "rated", "runs": "checked", "all": "judged"}[source]
    need = ("a reply judged good" if fmt == "sft" else
            "a reply with an alternative (/retry), one judged good and one bad")
    why = "; ".join(f"{n} × {reason}" for reason, n in tally.skipped.most_common(2))
    return (f"no {fmt} records in {read} session{'s' * (read != 1)}: none has {need} "
            f"(from {source}: {judged} replies){f'; left out: {why}' if why else ''}")


def from_file(path: Path, fmt: str) -> Records:
    """The records of a JSONL file (`chatterm export`'s formats)."""
    try:
        data = safe_files.read_bytes(path, MOST_BYTES, "data file")
    except FileNotFoundError:
        raise InputError(f"no data file {path}") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start:,})") from None
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json_input.loads(line)
        except ValueError as e:
            raise InputError(f"{path} line {n}: not JSON ({e})") from None
        _check(record, fmt, f"{path} line {n}")
        items.append(record)
    if not items:
        raise InputError(f"{path}: no records (chatterm export --format {fmt} -o FILE writes them)")
    return Records(fmt, items, str(path))


def _check(record: Any, fmt: str, where: str) -> None:
    if not isinstance(record, dict):
        raise InputError(f"{where}: a record is a JSON object, not {_kind(record)}")
    if fmt == "sft":
        if "messages" not in record and {"prompt", "chosen", "rejected"} <= record.keys():
            raise InputError(f"{where}: a dpo record (prompt, chosen, rejected); train it with --format dpo")
        messages = _messages(record, "messages", where)
        if not any(m["role"] == "assistant" for m in messages):
            raise InputError(f"{where}: no assistant message to learn")
    else:
        if "messages" in record and "chosen" not in record:
            raise InputError(f"{where}: an sft record (messages) has no pairs; --format dpo needs "
                             "prompt, chosen and rejected (chatterm export --format dpo)")
        prompt = _messages(record, "prompt", where)
        if not prompt:
            raise InputError(f"{where}: an empty prompt")
        for key in ("chosen", "rejected"):
            reply = _messages(record, key, where)
            if not reply or any(m["role"] != "assistant" for m in reply):
                raise InputError(f"{where}: {key} must be assistant messages")
    tools = record.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise InputError(f"{where}: tools must be a list of JSON Schemas")


def _messages(record: dict, key: str, where: str) -> list[dict]:
    messages = record.get(key)
    if not isinstance(messages, list):
        raise InputError(f"{where}: no {key!r} list of messages")
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            raise InputError(f"{where}: {key} {i} is {_kind(m)}, not a message")
        if m.get("role") not in ROLES:
            raise InputError(f"{where}: {key} {i} has no role of {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise InputError(f"{where}: {key} {i} has no text content")
        calls = m.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(_is_call(c) for c in calls)):
            raise InputError(f"{where}: {key} {i} has tool_calls that are not function calls")
    return messages


def _is_call(call: Any) -> bool:
    function = call.get("function") if isinstance(call, dict) else None
    return isinstance(function, dict) and isinstance(function.get("name"), str)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false",
            type(None): "null"}.get(type(value), "a number")
