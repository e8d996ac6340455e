"""Saved sessions by the thousand: how long `chatterm sessions` (a summary of each)
and `--search` take. The sessions are synthetic, as long as real chats (12 turns, a
third in Chinese, some with alternatives and ratings), written into a temporary
XDG_DATA_HOME that is removed afterwards. The page cache is warm (a user who has just
chatted); a cold one adds the disk's time to read the bytes reported."""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chatterm import sessions
from chatterm.sessions import archive

RARE = "zanzibar-7"  # in one session only
ENGLISH = ("The function returns a list of the words in the text, split on whitespace. "
           "Use a dictionary when you need to look values up by key; a list keeps order. ")
CHINESE = "这个函数把文本按空白分开，返回单词的列表。需要按键查找时用字典；列表保留顺序。"


def synthetic(n: int, turns: int = 12, seed: int = 1) -> Iterator[tuple[str, dict]]:
    rng = random.Random(seed)
    for k in range(n):
        text = CHINESE if k % 3 == 0 else ENGLISH
        messages: list[dict] = [{"role": "system", "content": "You are a helpful assistant."}]
        for t in range(turns):
            messages.append({"role": "user", "content": f"Question {t} of session {k}: " + text[:rng.randint(40, 120)]})
            reply: dict[str, Any] = {"role": "assistant", "content": text * rng.randint(3, 9), "finish": "eog"}
            if rng.random() < 0.1:
                reply["rating"] = rng.choice(sessions.RATINGS)
                reply["alternatives"] = [[{"role": "assistant", "content": text * 2, "finish": "eog"}]]
            messages.append(reply)
        if k == n // 2:
            messages[3]["content"] += f" The password is {RARE}."
        yield f"bench-{k:05d}", {"format": sessions.FORMAT, "name": f"bench-{k:05d}", "created": "2026-01-01T00:00:00",
                                 "updated": "2026-01-01T00:00:00", "model": "smollm2", "engine": "llama.cpp",
                                 "sampling": {}, "messages": messages}


@contextmanager
def saved_sessions(n: int) -> Iterator[int]:
    """`n` synthetic sessions in a temporary data folder; yields their total size in bytes."""
    old = os.environ.get("XDG_DATA_HOME")
    with tempfile.TemporaryDirectory(prefix="chatterm-bench-") as tmp:
        os.environ["XDG_DATA_HOME"] = tmp
        try:
            folder = sessions.sessions_dir()
            folder.mkdir(parents=True)
            size = 0
            for name, data in synthetic(n):
                text = json.dumps(data, ensure_ascii=False, indent=1)
                (folder / f"{name}.json").write_text(text, encoding="utf-8")
                size += len(text.encode("utf-8"))
            yield size
        finally:
            if old is None:
                os.environ.pop("XDG_DATA_HOME", None)
            else:
                os.environ["XDG_DATA_HOME"] = old


def list_time() -> float:
    """Seconds for `chatterm sessions`'s work: every file read, checked and summarised."""
    start = time.perf_counter()
    for item in archive.read_all(archive.files()):
        if isinstance(item, sessions.Session):
            archive.summary(item)
    return time.perf_counter() - start


def search_time(text: str) -> tuple[float, int]:
    """Seconds for `chatterm sessions --search TEXT`, and the hits found."""
    start = time.perf_counter()
    hits = sum(1 for h in archive.search(text, archive.files()) if isinstance(h, archive.Hit))
    return time.perf_counter() - start, hits

