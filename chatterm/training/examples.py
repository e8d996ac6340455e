"""Records as token ids, exactly as a chat feeds the model: rendered by the model's
chat template through the chat's own backend (`LocalBackend.render`, text from
outside guarded so it never becomes control tokens) and tokenized by the engine that
will run the adapter (llama.cpp), piece by piece as a chat evaluates them. The loss
counts each reply's tokens and its end-of-turn markup (so the model learns to stop),
never the prompt's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatterm.conversation.model import Model
from chatterm.errors import InputError


@dataclass
class Example:
    """sft: a conversation's ids, and which of them the loss counts."""

    ids: list[int]
    learn: list[bool]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Pair:
    """dpo: a prompt's ids and two replies' ids (each with its end-of-turn markup)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]

    def __len__(self) -> int:
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))


def of_model(model: Model, records: list[dict], fmt: str, where: str) -> list[Example] | list[Pair]:
    """Every record as the ids of `model` (a local model, waited for): its chat template,
    its engine's tokenizer, its context window (a longer record is InputError). The
    caches saved with sessions are neither read nor written."""
    model.wait_ready()
    backend: Any = model.backend
    backend.kv = None
    return prepare(backend, records, fmt, backend.n_ctx, where)


def prepare(backend: Any, records: list[dict], fmt: str, n_ctx: int, where: str) -> list[Example] | list[Pair]:
    """Every record as ids; a record longer than `n_ctx` tokens is InputError."""
    make = sft if fmt == "sft" else dpo
    out: list[Any] = []
    for n, record in enumerate(records, 1):
        made = make(backend, record)
        if len(made) > n_ctx:
            raise InputError(f"{where}: record {n} is {len(made):,} tokens, longer than the {n_ctx:,}-token "
                             "context (--ctx sets it, up to what the model was trained on)")
        out.append(made)
    return out


def sft(backend: Any, record: dict) -> Example:
    """Every reply of the conversation learned, each after its own history. A template
    that renders a turn differently once a later one follows (some drop earlier
    replies' reasoning) cannot be cut turn by turn: then the last reply alone."""
    messages, tools = record["messages"], record.get("tools")
    replies = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    example = Example([], [])
    done = ""
    for k in replies:
        prompt = backend.render(messages[:k], tools=tools)
        whole = backend.render(messages[:k + 1], tools=tools, generation=False)
        if not prompt.startswith(done) or not whole.startswith(prompt):
            return _reply(backend, messages, replies[-1], tools)
        _add(backend, example, prompt[len(done):], False, first=not done)
        _add(backend, example, whole[len(prompt):], True, first=False)
        done = whole
    return example


def _reply(backend: Any, messages: list[dict], k: int, tools: Any) -> Example:
    prompt = backend.render(messages[:k], tools=tools)
    example = Example([], [])
    _add(backend, example, prompt, False, first=True)
    _add(backend, example, _added(backend, messages[:k], prompt, [messages[k]], tools), True, first=False)
    return example


def _added(backend: Any, history: list[dict], prompt: str, reply: list[dict], tools: Any) -> str:
    """What `reply` adds to `prompt` (the text of `history` ready for a reply): the
    reply and its end-of-turn markup."""
    whole = backend.render([*history, *reply], tools=tools, generation=False)
    if not whole.startswith(prompt):
        raise InputError("the model's chat template renders a reply apart from its prompt; "
                         "choose another with the model entry's template")
    return whole[len(prompt):]


def _add(backend: Any, example: Example, text: str, learn: bool, first: bool) -> None:
    ids = backend.encode(text, first=first)
    example.ids += ids
    example.learn += [learn] * len(ids)


def dpo(backend: Any, record: dict) -> Pair:
    prompt, tools = record["prompt"], record.get("tools")
    text = backend.render(prompt, tools=tools)
    chosen, rejected = (backend.encode(_added(backend, prompt, text, record[key], tools), first=False)
                        for key in ("chosen", "rejected"))
    return Pair(backend.encode(text, first=True), chosen, rejected)
