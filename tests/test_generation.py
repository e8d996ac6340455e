from __future__ import annotations

from chatterm.chat import Chat
from chatterm.engines.base import Sampling
from chatterm.errors import ContextOverflowError
from chatterm.generation import Generation
from chatterm.templates import resolve
from tests.fakes import FakeEngine

import pytest


def gen(engine, text="", **kw):
    stop = kw.pop("stop", ())
    return Generation(engine, engine.tokenize(text or "p"), Sampling(**kw), stop)


def test_multibyte_characters_split_across_tokens_stream_whole():
    engine = FakeEngine()
    engine.queue("你好，世界 👍🏽")
    g = gen(engine)
    chunks = list(g)
    assert "".join(chunks) == "你好，世界 👍🏽"
    assert all("\ufffd" not in c for c in chunks)
    assert g.finish == "eog"


def test_cut_in_the_middle_of_a_character_drops_the_half():
    engine = FakeEngine()
    engine.queue("ab你")  # 2 + 3 bytes
    g = gen(engine, max_tokens=4)
    assert g.run() == "ab" and g.finish == "length"


def test_stop_string_split_across_tokens_is_never_shown():
    engine = FakeEngine()
    engine.queue("Hello USER: more")
    g = gen(engine, stop=["USER:"])
    chunks = list(g)
    assert "".join(chunks) == "Hello " and g.finish == "stop"


def test_partial_stop_prefix_is_released_when_it_does_not_complete():
    engine = FakeEngine()
    engine.queue("a USE b")
    assert gen(engine, stop=["USER:"]).run() == "a USE b"


def test_per_token_work_does_not_grow_with_the_reply():
    # The stop check looks at a bounded window: a 200 kB reply with stop strings
    # streams in well under a second here (quadratic work would take minutes).
    import time
    engine = FakeEngine(n_ctx=1_000_000)
    engine.queue("x" * 200_000)
    t = time.perf_counter()
    text = gen(engine, stop=["<|im_end|>", "\nUSER:"], max_tokens=300_000).run()
    assert len(text) == 200_000 and time.perf_counter() - t < 5


def test_chat_keeps_history_and_reuses_ids():
    engine = FakeEngine()
    engine.queue("one", "two")
    chat = Chat(engine, resolve("chatml", None, bos="", eos=""), Sampling(), system="sys")
    assert "".join(chat.send("hi")) == "one"
    first_ids = list(chat.cache.ids)
    assert "".join(chat.send("again")) == "two"
    assert engine.prompts[1][:len(first_ids) - 1] == first_ids[:-1]
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]


def test_prompt_larger_than_the_window_is_refused_and_not_kept():
    engine = FakeEngine(n_ctx=100)
    chat = Chat(engine, resolve("chatml", None, bos="", eos=""), Sampling())
    with pytest.raises(ContextOverflowError, match="context window holds 100"):
        list(chat.send("x" * 500))
    assert chat.messages == []


def test_oldest_turns_are_dropped_to_fit_but_never_the_system_prompt():
    engine = FakeEngine(n_ctx=300)
    engine.queue(*(["r" * 40] * 6))
    chat = Chat(engine, resolve("chatml", None, bos="", eos=""), Sampling(max_tokens=50), system="SYS")
    for i in range(6):
        "".join(chat.send(f"question {i} " + "q" * 30))
    prompt = bytes(engine.prompts[-1]).decode()
    assert prompt.startswith("<|im_start|>system\nSYS")
    assert "question 5" in prompt and "question 0" not in prompt
    assert chat.dropped > 0
    assert len(chat.messages) == 13  # nothing is deleted from the conversation itself
