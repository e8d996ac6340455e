"""All saved sessions at once: a summary of each, text search across them, and the
choice of sessions by name or date (for `chatterm sessions`, `/sessions` and
`chatterm export`). A file that cannot be read is reported, never fatal."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from chatterm import branches, safe_files, sessions
from chatterm.errors import ChattermError

SNIPPET = 70  # characters of context around a search hit


@dataclass
class Unreadable:
    path: Path
    reason: str

    @property
    def line(self) -> str:
        return f"skipped {self.path.name}: {self.reason}"


@dataclass
class Summary:
    name: str
    updated: datetime
    model: str
    turns: int  # questions on the current path
    good: int  # ratings anywhere in the tree
    bad: int
    first: str  # the first question


@dataclass
class Hit:
    name: str
    updated: datetime
    where: str  # "question 2", "reply 3", "system prompt"; "(alternative)" off the current path
    snippet: str


def files() -> list[Path]:
    """Session files, newest first."""
    folder = sessions.sessions_dir()
    found = folder.glob("*.json") if folder.is_dir() else ()
    return sorted(found, key=lambda p: (-sessions.mtime(p), p.name))


def read_all(paths: Iterable[Path]) -> Iterator[sessions.Session | Unreadable]:
    for path in paths:
        item = _read(path)
        if item is not None:
            yield item


def _read(path: Path, data: bytes | None = None) -> sessions.Session | Unreadable | None:
    """The session in `path` (None: removed since it was listed)."""
    try:
        return sessions.read(path, data)
    except FileNotFoundError:
        return None
    except sessions.SessionError as e:
        return Unreadable(path, _reason(str(e), path))


def partition(items: Iterable[object]) -> tuple[list, list[Unreadable]]:
    """(what was read, the files that could not be)."""
    read: list = []
    unreadable: list[Unreadable] = []
    for item in items:
        if isinstance(item, Unreadable):
            unreadable.append(item)
        else:
            read.append(item)
    return read, unreadable


def _reason(message: str, path: Path) -> str:
    return message.replace(f"session file {path} is ", "").replace(f"session file {path}", "its settings")


def updated(session: sessions.Session, path: Path | None = None) -> datetime:
    """When `session` was last written (the file's own record, else its mtime)."""
    try:
        return datetime.fromisoformat(session.updated or session.created)
    except ValueError:
        return datetime.fromtimestamp(sessions.mtime(path or session.path))


def summary(session: sessions.Session) -> Summary:
    path = session.messages
    good = bad = 0
    for _, firsts, _ in branches.walk(path):
        for m in firsts:
            good += m.get("rating") == "good"
            bad += m.get("rating") == "bad"
    first = next((m["content"] for m in path if m["role"] == "user"), "")
    model = Path(session.model).name if session.model.startswith("/") else session.model  # a file's name
    return Summary(session.name, updated(session), model, branches.count(path, "user"),
                   good, bad, " ".join(first.split()))


def search(text: str, paths: Iterable[Path]) -> Iterator[Hit | Unreadable]:
    """Messages containing `text` (any case), every version of them included. Files
    are first matched as raw text, so only the few that contain it are parsed."""
    needle = text.lower()
    encoded = json.dumps(needle, ensure_ascii=False)[1:-1]  # as it appears inside a JSON string
    for path in paths:
        try:
            data = safe_files.read_bytes(path, sessions.MAX_FILE, what="session file")
        except safe_files.RefusedFile as e:
            yield Unreadable(path, _reason(str(e), path))
            continue
        except OSError:
            continue
        raw = data.decode("utf-8", errors="replace").lower()
        # Files written elsewhere may escape non-ASCII text (\uXXXX): those are parsed.
        if encoded not in raw and "\\u" not in raw:
            continue
        item = _read(path, data)  # parsed from the bytes already read
        if isinstance(item, Unreadable):
            yield item
        elif item is not None:
            yield from _hits(item, needle)


def _hits(session: sessions.Session, needle: str) -> Iterator[Hit]:
    when = updated(session)
    for history, firsts, current in branches.walk(session.messages):
        role = firsts[0]["role"]
        number = history.role_count(role) + 1
        where = {"system": "system prompt", "user": f"question {number}", "assistant": f"reply {number}"}[role]
        for k, m in enumerate(firsts, 1):
            found = m["content"].lower().find(needle)
            if found >= 0:
                yield Hit(session.name, when, where + ("" if k == current else " (alternative)"),
                          _snippet(m["content"], found, len(needle)))


def _snippet(text: str, at: int, length: int) -> str:
    start = max(0, at - SNIPPET // 2)
    end = min(len(text), at + length + SNIPPET // 2)
    return ("…" if start else "") + " ".join(text[start:end].split()) + ("…" if end < len(text) else "")


def select(names: Iterable[str], since: date | None, until: date | None) -> list[Path]:
    """Session files by name (or path), all when no name is given, then by the date
    they were last written."""
    names = list(names)
    if names:
        paths = [_named(n) for n in names]
    else:
        paths = files()
    if since is None and until is None:
        return paths
    return [p for p in paths if _within(datetime.fromtimestamp(sessions.mtime(p)).date(), since, until)]


def _named(name: str) -> Path:
    path = sessions.path_of(name)
    if not path.is_file():
        raise ChattermError(f"no session {name!r} ({path}); chatterm sessions lists them")
    return path


def _within(day: date, since: date | None, until: date | None) -> bool:
    return (since is None or day >= since) and (until is None or day <= until)
