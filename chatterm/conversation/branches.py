"""A conversation that keeps every version of its messages: alternatives of a reply
(`/retry`) and edited questions (`/edit`) as a tree.

The tree is stored as its current path, a plain message list (what old chatterm
versions and every backend read), where a message with other versions carries them:

    {"role": "assistant", "content": "current", "version": 2,
     "alternatives": [[{"role": "assistant", "content": "older"}, ...what followed it],
                      [{"role": "assistant", "content": "newer"}]]}

`alternatives` are the other versions in the order they were made, each with the
messages that followed it; `version` is this one's number among all of them (absent:
the last). Nesting grows with the number of forks taken, not with the conversation.
"""

from __future__ import annotations

from typing import Iterator

TREE_KEYS = ("alternatives", "version")


def versions(path: list[dict], i: int) -> list[list[dict]]:
    """Every version of `path[i]` in the order they were made, each with what followed
    it (the current one: the rest of `path`)."""
    head = path[i]
    others = head.get("alternatives") or []
    k = current_version(head)
    current = [bare(head), *path[i + 1:]]
    return [*others[:k - 1], current, *others[k - 1:]]


def current_version(head: dict) -> int:
    """The number (from 1) of the version `head` is among its alternatives."""
    others = head.get("alternatives") or []
    return head.get("version", len(others) + 1)


def choose(path: list[dict], i: int, every: list[list[dict]], number: int) -> None:
    """Make version `number` of `every` (`versions(path, i)`) current: `path[i:]` becomes
    it, in place, and the others hang on its first message."""
    chosen = every[number - 1]
    others = every[:number - 1] + every[number:]
    head = bare(chosen[0])
    if others:
        head["alternatives"] = others
        if number != len(every):
            head["version"] = number
    path[i:] = [head, *chosen[1:]]


def add_version(path: list[dict], i: int, message: dict) -> None:
    """`message` becomes the newest version of `path[i]`, current, with nothing after it."""
    every = versions(path, i)
    every.append([message])
    choose(path, i, every, len(every))


def bare(message: dict) -> dict:
    """`message` without its alternatives (its own text, finish, rating)."""
    return {k: v for k, v in message.items() if k not in TREE_KEYS}


def newest_fork(path: list[dict]) -> int | None:
    """Index of the last message on `path` that has other versions."""
    return next((i for i in range(len(path) - 1, -1, -1) if path[i].get("alternatives")), None)


def walk(path: list[dict], history: tuple[dict, ...] = (), on_path: bool = True
         ) -> Iterator[tuple[tuple[dict, ...], list[dict], int]]:
    """Every point of the tree under `path`: (the messages before it, the first message
    of each of its versions, the number of the version the current path takes there,
    0 off the current path). A message without alternatives is a point of one version."""
    for i, message in enumerate(path):
        before = history + tuple(path[:i])
        every = versions(path, i)
        k = current_version(message)
        yield before, [v[0] for v in every], k if on_path else 0
        for number, version in enumerate(every, 1):
            if number != k:
                yield from walk(version[1:], before + (version[0],), on_path=False)


def position(path: list[dict], i: int) -> str:
    """How the transcript names `path[i]`: "reply 2", "question 3", "system prompt"."""
    role = path[i]["role"]
    if role == "system":
        return "system prompt"
    return f"{'reply' if role == 'assistant' else 'question'} {count(path[:i + 1], role)}"


def count(path: list[dict], role: str) -> int:
    return sum(1 for m in path if m["role"] == role)


def index_of(path: list[dict], role: str, number: int) -> int | None:
    """Index on `path` of the `number`-th (from 1) message of `role`."""
    seen = 0
    for i, m in enumerate(path):
        if m["role"] == role:
            seen += 1
            if seen == number:
                return i
    return None
