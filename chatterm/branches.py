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

from collections.abc import Iterator, Sequence
from typing import Any

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


class Prefix(Sequence):
    """The messages before a point of the tree, without copying them: those of
    `parent`, then `path[:end]`; `role_count` without counting. Making one costs the
    same however long the conversation is."""

    def __init__(self, parent: Prefix | None, path: list[dict], end: int, counts: dict[str, int]):
        self._parent, self._path, self._end, self._counts = parent, path, end, counts
        self._len = (len(parent) if parent is not None else 0) + end

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[dict]:
        if self._parent is not None:
            yield from self._parent
        yield from self._path[:self._end]

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, int) and -self._end <= i < 0:
            return self._path[self._end + i]  # the common case: the message just before
        return list(self)[i]

    def role_count(self, role: str) -> int:
        return self._counts.get(role, 0)


_EMPTY = Prefix(None, [], 0, {})


def walk(path: list[dict], history: Prefix = _EMPTY, on_path: bool = True
         ) -> Iterator[tuple[Prefix, list[dict], int]]:
    """Every point of the tree under `path`: (the messages before it, the first message
    of each of its versions, the number of the version the current path takes there,
    0 off the current path). A message without alternatives is a point of one version.
    Linear in the size of the tree: nothing before a point is copied."""
    counts = dict(history._counts)
    for i, message in enumerate(path):
        before = Prefix(history, path, i, dict(counts))
        others = message.get("alternatives") or []
        k = current_version(message)
        yield before, [o[0] for o in others[:k - 1]] + [bare(message)] + [o[0] for o in others[k - 1:]], \
            k if on_path else 0
        for other in others:
            with_first = Prefix(before, other, 1, {**counts, other[0]["role"]: counts.get(other[0]["role"], 0) + 1})
            yield from walk(other[1:], with_first, on_path=False)
        counts[message["role"]] = counts.get(message["role"], 0) + 1


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
