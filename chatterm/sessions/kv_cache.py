"""The KV cache kept with sessions: a chat resumed (`-c`, `--session`, `/load`) reads
only the tokens after what it had evaluated when it was left.

`$XDG_CACHE_HOME/chatterm/kv/KEY/` holds, for one model file and context setting (KEY:
a digest of the file's path, size and modification time, the engine, the context size
and the kernel mode), pairs of files: `ID.state` (llama.cpp's sequence state: the KV
cache and its token ids) and `ID.json` (the prompt text those ids are, the ids, the
session, the state file's SHA-256). A prompt whose text starts with a saved text takes
that state: the engine checks the digest before reading it and the token ids after, so
a truncated, corrupt, stale or foreign file is ignored and the history read again.
Files are written under temporary names and renamed; the `.json` last, so a state
without its description is never used, and one left without it (a full disk, a kill)
is counted and removed within the hour. The folder is bounded (CHATTERM_KV_CACHE_GB,
4 GiB by default; a value that is no number of GiB is one line): least recently used
pairs go first. Descriptions are read as every file from outside is (`safe_files`:
regular files only, bounded); a state that is no regular file is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from chatterm import paths, safe_files
from chatterm.errors import ConfigError
from chatterm.settings import parse_number

MIN_TOKENS = 64  # a shorter prefix is read again faster than a file is loaded
DEFAULT_LIMIT_GB = 4.0
MAX_LIMIT_GB = 1 << 20  # a PiB: more is a typo
MAX_DESCRIPTION = 64 << 20  # bytes: a prompt's text and ids are far less
ORPHAN_AGE_S = 3600  # a state this old without its description was left by a failed write


def folder() -> Path:
    return paths.cache_dir() / "kv"


def limit_bytes() -> int:
    """CHATTERM_KV_CACHE_GB in bytes (ConfigError, one line, for a value that is no
    number of GiB: `inf`, `1e400`, `lots`)."""
    text = os.environ.get("CHATTERM_KV_CACHE_GB")
    if text is None:
        return int(DEFAULT_LIMIT_GB * (1 << 30))
    try:
        gb = parse_number(text.strip())
    except ValueError:
        gb = -1.0
    if not 0 <= gb <= MAX_LIMIT_GB:
        raise ConfigError(f"CHATTERM_KV_CACHE_GB={text[:40]!r} is not a number of GiB from 0 to {MAX_LIMIT_GB:,}")
    return int(gb * (1 << 30))


def limit_problem() -> str | None:
    """What is wrong with CHATTERM_KV_CACHE_GB, said once in a chat (which keeps to
    the default bound meanwhile); None when nothing is."""
    try:
        limit_bytes()
    except ConfigError as e:
        return f"{e}: the saved caches keep to {DEFAULT_LIMIT_GB:g} GiB"
    return None


def _limit_or_default() -> int:
    try:
        return limit_bytes()
    except ConfigError:
        return int(DEFAULT_LIMIT_GB * (1 << 30))


def read_description(path: str | Path) -> dict[str, Any] | None:
    """A state's description (None: missing, not a regular file, too large, or no JSON
    object)."""
    try:
        data = safe_files.read_bytes(Path(path), MAX_DESCRIPTION, what="saved cache description")
        entry = json.loads(data.decode("utf-8", errors="surrogatepass"))
    except (OSError, safe_files.RefusedFile, ValueError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None


def model_key(model_path: str, engine: str, n_ctx: int, mode: str, adapters: list | None = None) -> str:
    """One key for one model file, engine and context setting (`mode`: the kernels),
    with the LoRA adapters in effect (a cache computed with them is another model's)."""
    try:
        st = os.stat(model_path)
        identity = [os.path.realpath(model_path), st.st_size, st.st_mtime_ns]
    except OSError:
        identity = [model_path, 0, 0]
    extra = [adapters] if adapters else []  # keys saved before adapters existed stay the same
    return hashlib.sha256(json.dumps([*identity, engine, n_ctx, mode, 1, *extra]).encode()).hexdigest()[:24]


class KvStore:
    def __init__(self, key: str, root: Path | None = None):
        self.key = key
        self.dir = (root or folder()) / key

    def find(self, text: str) -> dict[str, Any] | None:
        """The saved state whose text is the longest prefix of `text` (None: none)."""
        best = None
        for entry in self._entries():
            saved = entry.get("text")
            if isinstance(saved, str) and text.startswith(saved) and len(entry.get("ids", [])) >= MIN_TOKENS \
                    and (best is None or len(saved) > len(best["text"])):
                best = entry
        if best is not None:
            try:
                os.utime(best["path"] + ".json")  # recently used: evicted last
            except OSError:
                pass
        return best

    def new_state_path(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(self.dir / f"{uuid.uuid4().hex}.state")

    def record(self, state_path: str, text: str, ids: list[int], digest: str, session: str) -> None:
        """The description of a state just written (atomically, after the state), and
        the folder brought back under its bound."""
        base = state_path[:-len(".state")]
        tmp = f"{base}.json.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8", errors="surrogatepass") as f:
                json.dump({"text": text, "ids": ids, "digest": digest, "session": session, "saved": time.time()}, f,
                          ensure_ascii=False)
            os.replace(tmp, base + ".json")
        except OSError:  # a full disk: no state is left without its description
            for leftover in (tmp, state_path):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            raise
        for entry in self._entries():  # one state a session: its older ones are superseded
            if entry.get("session") == session and session and entry["path"] != base:
                remove(entry["path"])
        evict(_limit_or_default())

    def _entries(self) -> list[dict[str, Any]]:
        found = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        for name in names:
            if not name.endswith(".json"):
                continue
            base = str(self.dir / name[:-len(".json")])
            entry = read_description(base + ".json")
            if entry is not None and isinstance(entry.get("ids"), list) \
                    and safe_files.why_unreadable(Path(base + ".state")) is None:
                entry["path"] = base
                found.append(entry)
        return found


def remove(base: str) -> None:
    for suffix in (".json", ".state"):
        try:
            os.unlink(base + suffix)
        except OSError:
            pass


def pairs(root: Path | None = None) -> list[tuple[float, int, str, str]]:
    """(last used, bytes, base path, session) of every saved state, and of every state
    left without a description (session "")."""
    out = []
    root = root or folder()
    for json_path in root.glob("*/*.json"):
        base = str(json_path)[:-len(".json")]
        try:
            used = json_path.stat().st_mtime
            size = os.stat(base + ".state").st_size + json_path.stat().st_size
        except OSError:
            continue
        entry = read_description(json_path)
        out.append((used, size, base, str(entry.get("session", "")) if entry else ""))
    for state in root.glob("*/*.state"):
        base = str(state)[:-len(".state")]
        if not os.path.lexists(base + ".json"):
            try:
                st = state.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, base, ""))
    return out


def evict(limit: int, root: Path | None = None) -> int:
    """Least recently used states removed until the folder holds at most `limit`
    bytes, and leftovers of writes that failed or were killed; how many were removed."""
    root = root or folder()
    now = time.time()
    for tmp in root.glob("*/*.tmp"):
        try:
            if now - tmp.stat().st_mtime > ORPHAN_AGE_S:
                tmp.unlink()
        except OSError:
            pass
    every = sorted(pairs(root))
    total, removed = sum(size for _, size, _, _ in every), 0
    for used, size, base, _ in every:
        orphan = not os.path.lexists(base + ".json") and now - used > ORPHAN_AGE_S
        if total <= limit and not orphan:
            continue
        remove(base)
        total -= size
        removed += 1
    return removed


def forget_session(name: str, root: Path | None = None) -> int:
    """The saved states of session `name` removed (the session was deleted)."""
    gone = [base for _, _, base, session in pairs(root) if session == name]
    for base in gone:
        remove(base)
    return len(gone)
