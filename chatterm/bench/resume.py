"""A long chat resumed: time to its first new token with the KV cache saved with the
session and without it (the history read again), against a fresh chat's first turn;
A/B in one run, on the real model (`--resume-model`, default Qwen2.5-Coder 1.5B as
bench/fetch_models.py caches it) or the default model."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from chatterm.bench.stats import Figure, Target

SECTION = "Resuming a long chat: time to the first new token"
QUESTION = "In one sentence: what was the last note about?"


def history(tokens: int) -> list[dict]:
    """A session of about `tokens` tokens (a note and its acknowledgement a turn)."""
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    turn = 0
    while len(messages) * 40 < tokens:  # about 80 tokens a turn
        messages += [{"role": "user", "content": f"Note {turn}: the meeting about project {turn} moved to room "
                                                 f"{turn % 9 + 1}; bring the report, the budget and the plan. " * 2},
                     {"role": "assistant", "content": f"Noted: project {turn} meets in room {turn % 9 + 1}."}]
        turn += 1
    return messages


def measure(model: str, messages: list[dict], kv: bool, save: bool = False,
            threads: int = 2) -> tuple[float, int, int, list[dict]]:
    """(seconds to the first token of QUESTION's answer, prompt tokens, tokens the saved
    cache gave, the messages after it) in a new chat on `messages`, as `chatterm
    --session` opens it; `save`: its cache saved when it ends, as a chat's is."""
    from chatterm import loader
    from chatterm.loader import RunOptions
    from chatterm.sessions import Session

    options = RunOptions(model=model, engine="llama.cpp", threads=threads, ctx=8192)
    loaded = loader.load(options)
    chat = loader.conversation(loaded, options)
    try:
        chat.open(Session(name="bench-resume", messages=[dict(m) for m in messages]))
        chat.overrides = {"temperature": 0, "seed": 0, "max_tokens": 4, "compact": False}  # the whole history
        assert chat.ready()
        backend: Any = chat.backend  # a LocalBackend: the cache's own fields
        if not kv:
            backend.kv = None
        for _ in chat.send(QUESTION):
            pass
        if save:
            backend.save_kv("bench-resume")
        assert chat.last is not None
        return chat.last.first_token_s or 0.0, chat.last.prompt_tokens, backend.restored, list(chat.messages)
    finally:
        loaded.close()


def bench_resume(args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    model = args.resume_model or _real_model()
    tokens = 300 if args.quick else args.resume_tokens
    runs = 1 if args.quick else max(1, min(args.runs, 3))
    with tempfile.TemporaryDirectory() as cache:
        saved_env = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = cache  # the bench's saved caches, never the user's
        try:
            messages = history(tokens)
            fresh = [measure(model, messages[:1], kv=False, threads=args.threads)[0] for _ in range(runs)]
            left = measure(model, messages, kv=True, save=True, threads=args.threads)[3]  # the chat that was left
            reread, resumed, size, restored = [], [], 0, 0
            for _ in range(runs):
                reread.append(measure(model, left, kv=False, threads=args.threads)[0])
                seconds, size, restored, _ = measure(model, left, kv=True, threads=args.threads)
                resumed.append(seconds)
        finally:
            if saved_env is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = saved_env
    name = Path(model).name
    figures.append(Figure(SECTION, f"fresh chat, turn 1 ({name})", "s", fresh))
    figures.append(Figure(SECTION, f"{size:,}-token session, history read again", "s", reread))
    figures.append(Figure(SECTION, f"{size:,}-token session, saved cache ({restored:,} tokens loaded)", "s", resumed))
    ratio = _median(resumed) / max(_median(fresh), 1e-9)
    targets.append(Target("resumed TTFT / fresh turn-1 TTFT", ratio, 1.3, False))
    targets.append(Target("resumed TTFT with the saved cache / history read again",
                          _median(resumed) / max(_median(reread), 1e-9), 1.0, False))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _real_model() -> str:
    from chatterm.bench.code import real_model

    path = real_model()
    return str(path) if path.is_file() else "smollm2"
