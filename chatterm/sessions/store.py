"""Sessions on disk: written atomically after every change, never half-written.

A write goes to a temporary file in the same folder, is fsynced, then renamed over the
old file (and the folder fsynced), so a kill -9 at any moment leaves either the old or
the new session whole. Files are 0600 in a 0700 folder: conversations are private.

A session is the file it was opened from: its name is the file's name, whatever name
the file stores (a copied file is another session). `Session.stamp` remembers the file
as this process last read or wrote it, so a save can tell that someone else wrote it
since (`changed_elsewhere`) instead of overwriting their turn.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from chatterm import json_input, paths, safe_files, settings, surrogates
from chatterm.errors import ChattermError
from chatterm.records import RATINGS, AdapterUse
from chatterm.sessions import markdown

# 2: alternatives and ratings; 3: tool calls and results (written only by sessions with
# them; 1 and 2 read as they are). docs/sessions-format.md has the whole format.
FORMAT = 3
NAME = re.compile(r"^[\w.@-]{1,100}$")


class SessionError(ChattermError):
    pass


def check_name(name: str) -> str:
    """`name` when it can name a session file (SessionError otherwise)."""
    if not NAME.fullmatch(name):
        raise SessionError(f"session names use letters, digits, '.', '_', '@' and '-' (at most 100): {name!r}")
    return name


def sessions_dir() -> Path:
    return paths.data_dir() / "sessions"


@dataclass
class Session:
    name: str
    messages: list[dict] = field(default_factory=list)
    model: str = ""
    engine: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)  # the user's settings (`Conversation.overrides`)
    created: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))
    updated: str = ""  # when it was last written (read from the file)
    stamp: tuple[int, int, int] | None = None  # (inode, mtime, size) of the file as we last saw it
    repaired: str = ""  # what reading had to mend (lone surrogates), said once when opened

    @property
    def path(self) -> Path:
        return sessions_dir() / f"{self.name}.json"

    def changed_elsewhere(self) -> bool:
        """Whether the session's file was written by someone else since we read or
        wrote it (or was created, for a session we have not written yet)."""
        return file_stamp(self.path) not in (None, self.stamp)

    def to_json(self) -> dict[str, Any]:
        tools = any(m["role"] == "tool" for m in self.messages)
        return {"format": FORMAT if tools else 2, "name": self.name, "created": self.created,
                "updated": datetime.now().isoformat(timespec="seconds"), "model": self.model,
                "engine": self.engine, "sampling": self.sampling, "messages": self.messages}

    def save(self, path: Path | None = None) -> Path:
        target = path or self.path
        text = markdown.transcript(self) if target.suffix.lower() == ".md" else json.dumps(
            self.to_json(), ensure_ascii=False, indent=1)
        atomic_write(target, text.encode("utf-8", "replace"))  # "replace": a stray surrogate never costs the file
        if path is None:
            self.stamp = file_stamp(target)
        return target


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def new_name() -> str:
    """A new session's name: when it began, made unique (`-2`, `-3` for a second one
    in the same second)."""
    name = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    return free_name(name) if (sessions_dir() / f"{name}.json").exists() else name


def free_name(name: str) -> str:
    """`name-2`, `name-3`, ...: the first no session file has."""
    n = 2
    while (sessions_dir() / f"{name}-{n}.json").exists():
        n += 1
    return f"{name}-{n}"


def choose(name: str | None, resume: bool) -> Session:
    """The session a chat or a one-shot answer goes on in: the most recent (`resume`),
    the one named (made when it does not exist yet), or a new one."""
    if resume:
        recent = most_recent()
        if recent is None:
            raise SessionError("no saved session to continue")
        return load(recent)
    if name:
        check_name(name)
        if (sessions_dir() / f"{name}.json").exists():
            return load(name)
        return Session(name=name)
    return Session(name=new_name())


def atomic_write(target: Path, data: bytes) -> None:
    try:
        safe_files.write_atomic(target, data)
    except OSError as e:
        raise SessionError(f"cannot write {target}: {e.strerror or e}") from None


ensure_private_dir = safe_files.ensure_private_dir


def clean_leftovers(max_age_s: float = 60.0) -> None:
    """Temp files of writes that were killed mid-way (never of a write in progress)."""
    folder = sessions_dir()
    if not folder.is_dir():
        return
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
        except OSError:
            pass


def path_of(name_or_path: str) -> Path:
    """The file of a saved session's name (any file name the folder holds, spaces
    included), or the path itself."""
    path = Path(name_or_path).expanduser()
    if "/" not in name_or_path and not name_or_path.startswith((".", "~")):
        named = sessions_dir() / f"{name_or_path}.json"
        if not path.suffix or named.is_file():
            return named
    return path


def load(name_or_path: str | Path) -> Session:
    """A saved session by name, or a session file from anywhere (which continues as a
    new session, under a new name)."""
    path = name_or_path if isinstance(name_or_path, Path) else path_of(name_or_path)
    try:
        session = read(path, mend=True)
    except FileNotFoundError:
        raise SessionError(f"no session {str(name_or_path)!r} ({path})") from None
    if path.parent != sessions_dir():
        session.name, session.stamp = f"{path.stem}-{new_name()}", None
    return session


MAX_FILE = 1 << 30  # bytes: a session file larger than this is not one chatterm wrote


def read(path: Path, data: bytes | None = None, mend: bool = False) -> Session:
    """The session in `path` (its bytes `data`, when already read), checked whole:
    SessionError says what is wrong with it. Only regular files are read. `mend`
    (opening it): an invalid optional field of a message (its version number, rating,
    thinking, adapters) is dropped and named in `repaired` rather than refused."""
    stamp = file_stamp(path)
    try:
        if data is None:
            data = safe_files.read_bytes(path, MAX_FILE, what="session file")
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise
    except safe_files.RefusedFile as e:
        raise SessionError(str(e)) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: JSON, and integers of over 4,300 digits
        raise SessionError(f"session file {path} is unreadable or corrupt ({_short(e)})") from None
    except RecursionError:
        raise SessionError(f"session file {path} is corrupt (nested too deeply)") from None
    repaired = ""
    if _SURROGATE_ESCAPE.search(data):  # only a JSON \udXXX escape makes a lone surrogate
        try:
            raw, mended = _mend(raw)
        except RecursionError:
            raise SessionError(f"session file {path} is corrupt (nested too deeply)") from None
        if mended:
            repaired = f"{mended} texts had broken characters (lone UTF-16 surrogates), now shown as \ufffd"
    messages = raw.get("messages") if isinstance(raw, dict) else None
    dropped: list[str] = []
    try:
        problem = _tree_problem(messages, dropped) if isinstance(messages, list) else "no messages"
    except RecursionError:
        problem = "nested too deeply"
    if problem is None and dropped and not mend:
        problem = dropped[0] + (f" and {len(dropped) - 1} more" if len(dropped) > 1 else "")
    if problem or not isinstance(messages, list):
        raise SessionError(f"session file {path} is corrupt ({problem})")
    if dropped:
        shown = "; ".join(dropped[:3]) + (f"; {len(dropped) - 3} more" if len(dropped) > 3 else "")
        repaired = "; ".join(filter(None, [repaired, f"left out what was invalid: {shown}"]))
    try:
        sampling = settings.validated(raw.get("sampling", {}), f"session file {path}")
    except settings.SettingError as e:
        raise SessionError(str(e)) from None
    return Session(name=path.stem, messages=messages, model=str(raw.get("model", "")),
                   engine=str(raw.get("engine", "")), sampling=sampling, created=str(raw.get("created", "")),
                   updated=str(raw.get("updated", "")), stamp=stamp, repaired=repaired)


def _no_constant(name: str) -> None:
    """NaN and Infinity, which JSON has not (Python's parser reads them): no value."""
    return None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _mend(value: Any) -> tuple[Any, int]:
    """`value` with each lone surrogate in its strings replaced by U+FFFD (pairs
    joined); how many strings changed."""
    if isinstance(value, str):
        mended = surrogates.mend(value)
        return mended, int(mended is not value)
    if isinstance(value, list):
        parts = [_mend(v) for v in value]
        return [v for v, _ in parts], sum(n for _, n in parts)
    if isinstance(value, dict):
        entries = {k: _mend(v) for k, v in value.items()}
        return {k: v for k, (v, _) in entries.items()}, sum(n for _, n in entries.values())
    return value, 0


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:120]


def _tree_problem(messages: list, dropped: list[str], where: str = "") -> str | None:
    """What makes `messages` (a path with its alternatives) unusable, or None. An
    optional field that is invalid is removed from its message and said in `dropped`."""
    for n, m in enumerate(messages, 1):
        if not (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant", "tool", "summary")
                and isinstance(m.get("content"), str)):
            return "a message without a valid role and text"
        calls = m.get("tool_calls")
        if calls is not None and not (m["role"] == "assistant" and isinstance(calls, list) and all(
                isinstance(c, dict) and isinstance(c.get("function"), dict)
                and isinstance(c["function"].get("name"), str) for c in calls)):
            return "invalid tool calls"
        if calls and any(isinstance(c["function"].get("arguments"), str)
                         and json_input.depth(c["function"]["arguments"]) > json_input.MAX_DEPTH for c in calls):
            return f"tool call arguments nested more than {json_input.MAX_DEPTH} levels deep"
        others = m.get("alternatives")
        if others is not None and (not isinstance(others, list) or not all(isinstance(o, list) and o for o in others)):
            return "invalid alternatives"
        for key, valid in _OPTIONAL.items():
            if key in m and not valid(m[key], m):
                del m[key]
                dropped.append(f"an invalid {key} on message {where}{n}")
        for k, other in enumerate(others or (), 1):
            if not isinstance(other[0], dict) or other[0].get("role") != m["role"] or "alternatives" in other[0]:
                return "an alternative of another kind of message"
            problem = _tree_problem(other, dropped, f"{where}{n}.{k}.")
            if problem:
                return problem
    return None


def _version_valid(version: object, message: dict) -> bool:
    others = message.get("alternatives") or []
    return type(version) is int and 1 <= version <= len(others) + 1


def _adapters_valid(adapters: object, message: dict) -> bool:
    return isinstance(adapters, list) and all(
        isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("sha256", ""), str)
        and AdapterUse.of(a) is not None for a in adapters)


# A message's optional fields, and what a valid one is (an invalid one is left out).
_OPTIONAL: dict[str, Callable[[object, dict], bool]] = {
    "version": _version_valid,
    "rating": lambda value, _: value in RATINGS,
    "note": lambda value, _: isinstance(value, str),
    "thinking": lambda value, _: isinstance(value, str),
    "adapters": _adapters_valid,
}


def most_recent() -> Path | None:
    folder = sessions_dir()
    return max(folder.glob("*.json") if folder.is_dir() else (), key=mtime, default=None)


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
