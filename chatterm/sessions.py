"""Sessions on disk: written atomically after every change, never half-written.

A write goes to a temporary file in the same folder, is fsynced, then renamed over the
old file (and the folder fsynced), so a kill -9 at any moment leaves either the old or
the new session whole. Files are 0600 in a 0700 folder: conversations are private.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from chatterm import paths, settings
from chatterm.conversation.reply import Finish
from chatterm.errors import ChattermError

FORMAT = 1
NAME = re.compile(r"^[\w.@-]{1,100}$")


class SessionError(ChattermError):
    pass


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

    @property
    def path(self) -> Path:
        return sessions_dir() / f"{self.name}.json"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "created": self.created,
                "updated": datetime.now().isoformat(timespec="seconds"), "model": self.model,
                "engine": self.engine, "sampling": self.sampling, "messages": self.messages}

    def save(self, path: Path | None = None) -> Path:
        target = path or self.path
        if target.suffix.lower() == ".md":
            atomic_write(target, to_markdown(self).encode("utf-8"))
        else:
            atomic_write(target, json.dumps(self.to_json(), ensure_ascii=False, indent=1).encode("utf-8"))
        return target


def new_name() -> str:
    return datetime.now().strftime("%Y-%m-%d-%H%M%S")


def atomic_write(target: Path, data: bytes) -> None:
    folder = target.parent
    try:
        _ensure_private_dir(folder)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise SessionError(f"cannot write {target}: {e.strerror or e}") from None


def _ensure_private_dir(folder: Path) -> None:
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask


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


def load(name_or_path: str) -> Session:
    path = Path(name_or_path).expanduser()
    if not path.suffix and NAME.match(name_or_path):
        path = sessions_dir() / f"{name_or_path}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SessionError(f"no session {name_or_path!r} ({path})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SessionError(f"session file {path} is unreadable or corrupt ({e})") from None
    messages = raw.get("messages") if isinstance(raw, dict) else None
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str) for m in messages):
        raise SessionError(f"session file {path} is corrupt (no valid messages)")
    name = raw.get("name") if isinstance(raw.get("name"), str) and NAME.match(raw["name"]) else path.stem
    try:
        sampling = settings.validated(raw.get("sampling", {}), f"session file {path}")
    except settings.SettingError as e:
        raise SessionError(str(e)) from None
    if path.parent != sessions_dir():
        name = f"{path.stem}-{new_name()}"  # a file from elsewhere continues as a new session
    return Session(name=name, messages=messages, model=str(raw.get("model", "")),
                   engine=str(raw.get("engine", "")), sampling=sampling, created=str(raw.get("created", "")))


def listing() -> list[tuple[str, float, str]]:
    """(name, mtime, first user message) of saved sessions, newest first."""
    folder = sessions_dir()
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            first = next((m["content"] for m in raw.get("messages", []) if m.get("role") == "user"), "")
        except (OSError, ValueError, AttributeError, TypeError):
            first = "(unreadable)"
        found.append((path.stem, path.stat().st_mtime, " ".join(str(first).split())[:60]))
    return sorted(found, key=lambda s: -s[1])


def most_recent() -> str | None:
    items = listing()
    return items[0][0] if items else None


def to_markdown(session: Session) -> str:
    out = [f"# chatterm session {session.name}", "",
           f"Model: {session.model} ({session.engine})", ""]
    titles = {"system": "System", "user": "You", "assistant": "Assistant"}
    for m in session.messages:
        out.append(f"## {titles[m['role']]}")
        out.append("")
        out.append(m["content"])
        if Finish.of(m.get("finish")) in (Finish.CANCELLED, Finish.ERROR):
            out.append("")
            out.append("*(reply cut)*")
        out.append("")
    return "\n".join(out)
