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
without its description is never used. The folder is bounded (CHATTERM_KV_CACHE_GB,
4 GiB by default): least recently used pairs go first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from chatterm import paths

MIN_TOKENS = 64  # a shorter prefix is read again faster than a file is loaded
DEFAULT_LIMIT_GB = 4.0


def folder() -> Path:
    return paths.cache_dir() / "kv"


def limit_bytes() -> int:
    try:
        return int(float(os.environ.get("CHATTERM_KV_CACHE_GB", DEFAULT_LIMIT_GB)) * (1 << 30))
    except ValueError:
        return int(DEFAULT_LIMIT_GB * (1 << 30))


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
        with open(tmp, "w", encoding="utf-8", errors="surrogatepass") as f:
            json.dump({"text": text, "ids": ids, "digest": digest, "session": session, "saved": time.time()}, f,
                      ensure_ascii=False)
        os.replace(tmp, base + ".json")
        for entry in self._entries():  # one state a session: its older ones are superseded
            if entry.get("session") == session and session and entry["path"] != base:
                remove(entry["path"])
        evict(limit_bytes())

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
            try:
                with open(base + ".json", encoding="utf-8", errors="surrogatepass") as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(entry, dict) and isinstance(entry.get("ids"), list) and os.path.exists(base + ".state"):
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
    """(last used, bytes, base path, session) of every saved state."""
    out = []
    root = root or folder()
    for json_path in root.glob("*/*.json"):
        base = str(json_path)[:-len(".json")]
        try:
            used = json_path.stat().st_mtime
            size = os.path.getsize(base + ".state") + json_path.stat().st_size
            with open(json_path, encoding="utf-8", errors="surrogatepass") as f:
                session = str(json.load(f).get("session", ""))
        except (OSError, ValueError, AttributeError):
            continue
        out.append((used, size, base, session))
    return out


def evict(limit: int, root: Path | None = None) -> int:
    """Least recently used states removed until the folder holds at most `limit`
    bytes (and leftovers of writes that were killed); how many were removed."""
    root = root or folder()
    for tmp in root.glob("*/*.tmp"):
        if time.time() - tmp.stat().st_mtime > 3600:
            tmp.unlink(missing_ok=True)
    every = sorted(pairs(root))
    total, removed = sum(size for _, size, _, _ in every), 0
    for _, size, base, _ in every:
        if total <= limit:
            break
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
