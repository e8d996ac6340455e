"""Long conversations: how the cost of fitting the context window, listing, searching
and resuming grows with the number of messages in one session (it should grow no
faster than the messages themselves). The session is synthetic (English and Chinese
turns), written into a temporary XDG_DATA_HOME; fitting runs the real path: the
default model's GGUF chat template (its own process), its tokenizer in the engine
worker."""

from __future__ import annotations

import json
import time

from chatterm import sessions
from chatterm.bench.archive import CHINESE, ENGLISH, saved_sessions
from chatterm.sessions import archive


def messages(n: int) -> list[dict]:
    out: list[dict] = []
    for i in range(n // 2):
        text = CHINESE if i % 3 == 0 else ENGLISH
        out.append({"role": "user", "content": f"Question {i}: " + text[:60]})
        out.append({"role": "assistant", "content": text, "finish": "eog"})
    return out


def fit_times(n: int, n_ctx: int, runs: int, threads: int | None) -> list[float]:
    """Seconds to fit `n` messages into an `n_ctx` window (what each reply waits for)."""
    from chatterm import loader
    from chatterm.loader import RunOptions
    from chatterm.sessions import Session

    options = RunOptions(ctx=n_ctx, threads=threads)
    loaded = loader.load(options)
    try:
        conversation = loader.conversation(loaded, options)
        conversation.ready()
        history = messages(n)
        conversation.open(Session(name="", messages=list(history)))
        conversation.measure()  # the template worker starts, the template compiles
        times = []
        for _ in range(runs):
            conversation.open(Session(name="", messages=list(history)))
            start = time.perf_counter()
            conversation.measure()
            times.append(time.perf_counter() - start)
        return times
    finally:
        loaded.close()


def archive_times(n: int, runs: int) -> dict[str, list[float]]:
    """Seconds to list, search and read one session of `n` messages (beside 10 short ones)."""
    with saved_sessions(10):
        data = {"format": sessions.FORMAT, "messages": messages(n), "model": "smollm2"}
        (sessions.sessions_dir() / "long.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        found: dict[str, list[float]] = {"list": [], "search": [], "resume (read the file)": []}
        for _ in range(runs):
            start = time.perf_counter()
            for item in archive.read_all(archive.files()):
                if isinstance(item, sessions.Session):
                    archive.summary(item)
            found["list"].append(time.perf_counter() - start)
            start = time.perf_counter()
            sum(1 for _ in archive.search("dictionary", archive.files()))
            found["search"].append(time.perf_counter() - start)
            start = time.perf_counter()
            sessions.load("long")
            found["resume (read the file)"].append(time.perf_counter() - start)
        return found
