"""Training data from saved sessions, in the conversational formats of TRL's trainers
(https://huggingface.co/docs/trl/dataset_formats), which LLaMA-Factory reads too:

- sft: {"messages": [system?, user, assistant, ...]} (language modeling). By default
  only what can be trusted: one conversation per reply judged good (rated good, or
  whose code passed its checks), anywhere in the tree, ending with that reply and
  starting after the last reply before it that was not judged good (a record trains on
  every reply in it); longer ones absorb their own prefixes; unrated replies are left
  out and counted. With
  `unrated`: each session's current path, ended before the first reply that is cut,
  empty or rated bad (unjudged replies included).
  In both, every assistant message of a record is complete and not rated bad; a reply
  cut and finished with /continue is one message, whole once it ended.
- dpo: {"prompt": [...history], "chosen": [reply], "rejected": [reply]} for every
  good/bad pair among the alternatives of one reply (same history).
- kto: {"prompt": [...history], "completion": [reply], "label": bool} per rated reply.

`source` says what makes a reply good or bad: the user's ratings, the runs of
chatterm's checks (a reply whose code passed its question's examples is good, one that
failed is bad: `/alt`'s ✓ and ✗), or both (the default; a rating wins over a run). Each
dpo/kto record judged by more than ratings says its `source`.

A reasoning model's thinking is left out unless `thinking`: then each reply is
`<think>\n...\n</think>\n\nanswer`, as Qwen3 and DeepSeek-R1 were trained on it.
Cut replies (stopped, failed, out of tokens or context) and empty turns are left out
unless `include_cut` / `include_empty`; every reason something was left out is counted
in `skipped`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatterm import branches
from chatterm.records import Finish, Message

FORMATS = ("sft", "dpo", "kto")
SOURCES = ("ratings", "runs", "all")


@dataclass
class Options:
    format: str = "sft"
    only_good: bool = False
    include_cut: bool = False
    include_empty: bool = False
    thinking: bool = False  # a reasoning model's thinking, in its <think> block before the answer
    source: str = "all"  # what makes a reply good or bad (SOURCES)
    unrated: bool = False  # sft: unjudged replies too (each session's current path)


@dataclass
class Tally:
    records: int = 0
    sessions: int = 0  # sessions that gave at least one record
    labels: Counter = field(default_factory=Counter)  # kto: good/bad records
    skipped: Counter = field(default_factory=Counter)  # reason -> how many


# JSON leaves these raw; escaped, a record is inert on a terminal and one line for
# every reader (U+2028/9 end lines for JavaScript and str.splitlines), and still equal.
_RAW_CONTROLS = re.compile("[\x7f-\x9f\u2028\u2029]")


def jsonl(record: dict) -> str:
    """`record` as one JSONL line: UTF-8 text unescaped, controls escaped."""
    return _RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(record, ensure_ascii=False))


def records(messages: list[dict], options: Options, tally: Tally) -> Iterator[dict]:
    """The records of one session (its `messages` with their alternatives)."""
    make = {"sft": _sft if options.unrated and not options.only_good else _sft_good,
            "dpo": _dpo, "kto": _kto}[options.format]
    produced = 0
    for record in make(messages, options, tally.skipped):
        produced += 1
        if options.format == "kto":
            tally.labels["good" if record["label"] else "bad"] += 1
        yield record
    tally.records += produced
    tally.sessions += bool(produced)


def problem(stored: dict, options: Options) -> str | None:
    """Why a message cannot be training data, or None."""
    return _problem(Message.of(stored), options)


def _problem(message: Message, options: Options) -> str | None:
    if message.role in ("tool", "summary"):
        return None  # a tool's result is what it is; a summary is not part of the records
    if not options.include_empty and not message.content.strip() and not message.tool_calls:
        return "empty reply" if message.role == "assistant" else "empty question"
    finish = message.finish
    if not options.include_cut and finish is not None and (finish.cut or finish is Finish.CONTEXT):
        return "cut reply"
    return None


def _unfit(stored: dict, options: Options) -> str | None:
    """Why a message cannot be part of an SFT record."""
    message = Message.of(stored)
    bad = message.rating is not None and message.rating.value == "bad"
    return _problem(message, options) or ("reply rated bad" if bad else None)


def verdict(stored: dict, source: str) -> tuple[str, str] | None:
    """(good or bad, "ratings" or "runs") for a reply, by `source`; None: neither."""
    message = Message.of(stored)
    if source in ("ratings", "all") and message.rating is not None:
        return message.rating.value, "ratings"
    if source in ("runs", "all") and message.check is not None:
        return ("good" if message.check.ok else "bad"), "runs"
    return None


def _sft(messages: list[dict], options: Options, skipped: Counter) -> Iterator[dict]:
    end = 0
    for i, m in enumerate(messages):
        reason = _unfit(m, options) if m["role"] != "system" else None
        if reason:
            skipped[f"conversation ended before a {reason}" if end else reason] += 1
            break
        if m["role"] == "assistant":
            end = i + 1
    if end:
        yield _with_tools({"messages": _wire(messages[:end], options)})
    elif not any(m["role"] == "assistant" for m in messages):
        skipped["session without a reply"] += 1


def _sft_good(messages: list[dict], options: Options, skipped: Counter) -> Iterator[dict]:
    found: list[list[dict]] = []
    for history, firsts, _ in _replies(messages):
        for reply in firsts:
            said = verdict(reply, options.source)
            if said is None:
                skipped["unrated reply (--unrated keeps them)"] += 1
            if said is None or said[0] != "good":
                continue
            history = _trusted(history, options.source)
            before = (_unfit(m, options) for m in history if m["role"] != "system")
            reason = problem(reply, options) or next((f"a message before it: {r}" for r in before if r), None)
            if reason:
                skipped[f"good reply skipped: {reason}"] += 1
            else:
                found.append(_wire([*history, reply], options))
    # A record that another one continues adds nothing.
    for record in found:
        if not any(len(other) > len(record) and other[:len(record)] == record for other in found):
            yield _with_tools({"messages": record})


def _trusted(history: Sequence[dict], source: str) -> list[dict]:
    """`history` from the first question after its last reply not judged good (the
    system prompt kept): a record trains on every reply in it, so none unjudged. The
    replies of the record's own turn (tool calls before the answer) stay."""
    last_user = max((i for i, m in enumerate(history) if m["role"] == "user"), default=-1)
    untrusted = [i for i, m in enumerate(history[:last_user]) if m["role"] == "assistant"
                 and (verdict(m, source) or ("",))[0] != "good"]
    if not untrusted:
        return list(history)
    start = next(i for i in range(untrusted[-1], len(history)) if history[i]["role"] == "user")
    return [m for m in history[:start] if m["role"] == "system"] + list(history[start:])


def _dpo(messages: list[dict], options: Options, skipped: Counter) -> Iterator[dict]:
    for history, firsts, _ in _replies(messages):
        judged = [(m, said) for m in firsts if (said := verdict(m, options.source)) is not None]
        for m, said in judged:
            reason = problem(m, options)
            if reason:
                skipped[f"{'rated' if said[1] == 'ratings' else 'checked'} {reason}"] += 1
        usable = [(m, said) for m, said in judged if not problem(m, options)]
        good = [(m, said) for m, said in usable if said[0] == "good"]
        bad = [(m, said) for m, said in usable if said[0] == "bad"]
        if not (good and bad):
            if usable:
                verb = "rated" if options.source == "ratings" else "judged"
                skipped[f"{verb} reply without an alternative {verb} the other way" if len(firsts) > 1
                        else f"{verb} reply without alternatives (/retry makes one)"] += len(usable)
            continue
        prompt = _wire(history, options)
        for chosen, said_good in good:
            for rejected, said_bad in bad:
                record: dict[str, Any] = {"prompt": prompt, "chosen": _wire([chosen], options),
                                          "rejected": _wire([rejected], options)}
                if options.source != "ratings":
                    record["source"] = "ratings" if "ratings" in (said_good[1], said_bad[1]) else "runs"
                yield record


def _kto(messages: list[dict], options: Options, skipped: Counter) -> Iterator[dict]:
    for history, firsts, _ in _replies(messages):
        for m in firsts:
            said = verdict(m, options.source)
            if said is None:
                continue
            reason = problem(m, options)
            if reason:
                skipped[f"{'rated' if said[1] == 'ratings' else 'checked'} {reason}"] += 1
                continue
            record: dict[str, Any] = {"prompt": _wire(history, options), "completion": _wire([m], options),
                                      "label": said[0] == "good"}
            if options.source != "ratings":
                record["source"] = said[1]
            yield record


def _wrapped(thinking: str, answer: str) -> str:
    """The reply as reasoning models are trained on it: thinking in its block first."""
    return f"<think>\n{thinking.strip()}\n</think>\n\n{answer}" if thinking.strip() else answer


def _wire(messages: Iterable[dict], options: Options) -> list[dict]:
    """Messages as the formats take them: role and content (with the thinking, if
    asked); an assistant's tool calls and a tool's name as TRL's tool-calling format has them."""
    out: list[dict] = []
    for stored in messages:
        m = Message.of(stored)
        if m.role == "summary":  # exports are the original turns (compaction's summaries left out)
            continue
        wired: dict = {"role": m.role, "content": _wrapped(m.thinking, m.content)
                       if options.thinking and m.role == "assistant" else m.content}
        if m.tool_calls:
            wired["tool_calls"] = [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                   for c in m.tool_calls]
        if m.role == "tool":
            wired["name"] = m.name
        if m.adapters:  # which fine-tune said it: the next round's data knows base from adapter
            wired["adapters"] = [{"name": a.name, "sha256": a.sha256, "scale": a.scale} for a in m.adapters]
        out.append(wired)
    return out


def _with_tools(record: dict) -> dict:
    """An SFT record whose conversation calls tools gains TRL's `tools` column: the
    JSON Schema of each tool it calls."""
    names = list(dict.fromkeys(c["function"]["name"] for m in record["messages"] for c in m.get("tool_calls", [])))
    if not names:
        return record
    from chatterm.tools.builtin import BUILTIN

    schemas = [BUILTIN[n].schema() if n in BUILTIN else
               {"type": "function", "function": {"name": n, "description": "",
                                                 "parameters": {"type": "object", "properties": {}}}}
               for n in names]
    return {**record, "tools": schemas}


def _replies(messages: list[dict]) -> Iterator[tuple[Sequence[dict], list[dict], int]]:
    """The points of the tree that are replies to a question."""
    for history, firsts, current in branches.walk(messages):
        if firsts[0]["role"] == "assistant" and history and history[-1]["role"] in ("user", "tool"):
            yield history, firsts, current
