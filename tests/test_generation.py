"""Streaming one reply from an engine: whole characters, stop strings, limits."""

from __future__ import annotations

from chatterm.conversation.generation import Generation
from chatterm.engines.base import Decoding
from tests.fakes import FakeEngine


def gen(engine, text="", **kw):
    stop = kw.pop("stop", ())
    return Generation(engine, engine.tokenize(text or "p"), Decoding(**kw), stop)


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
