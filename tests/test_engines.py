"""Both engines, for real: the default model and tiny generated models."""

from __future__ import annotations

import pytest

from chatterm.conversation.generation import Generation
from chatterm.engines import load
from chatterm.engines.base import Decoding, LoadOptions
from chatterm.errors import EngineError
from chatterm.loader import RunOptions
from chatterm.sessions import Session
from tests.helpers import converse

ENGINES = ["llama.cpp", "ctransformers"]
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module", params=ENGINES)
def engine_name(request):
    return request.param


@pytest.fixture(scope="module")
def chat_factory(engine_name, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    loaded = {}

    def make(**sampling):
        import os
        os.environ["XDG_CACHE_HOME"] = str(cache)  # one compat copy for the module
        if "chat" not in loaded:
            loaded["chat"] = converse(RunOptions(engine=engine_name, threads=2, isolated=False))
        chat = loaded["chat"]
        chat.open(Session(name="", messages=chat.messages[:1]))
        chat.overrides = {**GREEDY, "max_tokens": 128, **sampling}
        return chat
    return make


def test_answers_a_question(chat_factory):
    chat = chat_factory()
    reply = "".join(chat.send("What is the capital of France?"))
    assert "Paris" in reply
    assert chat.last.finish == "eog"
    assert chat.messages[-1] == {"role": "assistant", "content": reply, "finish": "eog"}


def test_chinese_reply_has_no_replacement_characters(chat_factory):
    chat = chat_factory(max_tokens=96)
    chunks = list(chat.send("请用中文介绍一下北京。"))
    reply = "".join(chunks)
    assert reply and "\ufffd" not in reply
    assert any("\u4e00" <= ch <= "\u9fff" for ch in reply)
    assert all("\ufffd" not in c for c in chunks)


def test_max_tokens_and_continue_reuse_the_prefix(chat_factory):
    chat = chat_factory(max_tokens=8)
    first = "".join(chat.send("Write a short poem about the sea."))
    assert chat.last.finish == "length" and chat.last.n_tokens == 8
    evaluated = []
    engine = chat.engine
    original = engine.generate

    def counting(prompt, sampling, cancelled, limit=None):
        evaluated.append(len(prompt))
        return original(prompt, sampling, cancelled, limit)
    engine.generate = counting
    try:
        more = "".join(chat.continue_reply())
    finally:
        del engine.generate
    assert chat.messages[-1]["content"] == first + more
    assert len(chat.messages) == 3  # system, user, one assistant message
    # The continuation's prompt is the cached ids: nothing was re-tokenized.
    assert chat.backend.cache.ids[:evaluated[0]] == chat.last.prompt


def test_second_turn_evaluates_only_new_tokens(chat_factory):
    chat = chat_factory(max_tokens=24)
    "".join(chat.send("Name a colour."))
    before = list(chat.backend.cache.ids)
    "".join(chat.send("Name another one."))
    prompt = chat.last.prompt
    assert prompt[:len(before)] == before  # turn 1's ids, generated ones included, reused as-is
    assert len(prompt) - len(before) < 20


def test_second_turn_feeds_the_engine_only_new_tokens(chat_factory):
    chat = chat_factory(max_tokens=24)
    "".join(chat.send("Name a colour."))
    engine = chat.engine
    # The native evaluation call of each engine, spied on.
    target, name = (engine, "_decode") if engine.name == "llama.cpp" else (engine.llm, "eval")
    original, fed = getattr(target, name), []

    def spy(tokens, *args, **kwargs):
        fed.append(len(tokens))
        return original(tokens, *args, **kwargs)
    setattr(target, name, spy)
    try:
        "".join(chat.send("Name another one."))
    finally:
        delattr(target, name)
    assert len(chat.last.prompt) > 40
    assert 0 < fed[0] < 20  # the new message and the turn markers, not the history


def test_stop_string_cuts_the_reply(chat_factory):
    chat = chat_factory(max_tokens=64)
    chat.backend.stop.append("Paris")
    try:
        reply = "".join(chat.send("What is the capital of France?"))
    finally:
        chat.backend.stop.pop()
    assert "Paris" not in reply and chat.last.finish == "stop"


def test_cancel_between_tokens(chat_factory):
    chat = chat_factory(max_tokens=100)
    seen = []
    gen_text = []
    for chunk in chat.send("Count from one to fifty in words.", cancelled=lambda: len(seen) >= 3):
        seen.append(chunk)
        gen_text.append(chunk)
    assert chat.last.finish == "cancelled"
    assert chat.last.n_tokens <= 4
    assert chat.messages[-1]["content"] == "".join(gen_text)


def test_seed_makes_sampling_reproducible(chat_factory):
    chat = chat_factory(temperature=1.0, top_k=50, top_p=1.0, seed=1234, max_tokens=20)
    a = "".join(chat.send("Tell me a story."))
    chat.open(Session(name="", messages=chat.messages[:1], sampling=dict(chat.overrides)))
    b = "".join(chat.send("Tell me a story."))
    assert a == b


def test_token_counting_uses_the_model_tokenizer(chat_factory):
    engine = chat_factory().engine
    assert engine.count_tokens("Hello world") == 2
    assert engine.tokenize("<|im_end|>") == [2]


def test_tiny_llama_runs_and_engines_agree(tiny_llama):
    """Same weights, same greedy tokens, whichever engine reads them."""
    tokens = {}
    for name in ENGINES:
        engine = load(name, LoadOptions(path=tiny_llama, n_ctx=256, threads=2, gpu_layers=0))
        gen = Generation(engine, engine.tokenize("The quick brown fox"), Decoding(temperature=0, max_tokens=6))
        gen.run()
        engine.close()
        assert len(gen.tokens) == 6 and gen.finish == "length"
        tokens[name] = gen.tokens
    assert tokens["llama.cpp"] == tokens["ctransformers"]


def test_context_window_bounds_the_reply(tiny_llama):
    engine = load("llama.cpp", LoadOptions(path=tiny_llama, n_ctx=32, threads=2, gpu_layers=0))
    prompt = engine.tokenize("one two three four five six seven eight nine ten")
    gen = Generation(engine, prompt, Decoding(temperature=0, max_tokens=1000))
    gen.run()
    assert gen.finish == "context" and len(prompt) + len(gen.tokens) == engine.n_ctx  # llama.cpp rounds n_ctx up


def test_architecture_ctransformers_cannot_run(tiny_qwen2):
    with pytest.raises(EngineError, match="architecture 'qwen2'.*llama.cpp"):
        load("ctransformers", LoadOptions(path=tiny_qwen2, n_ctx=128, threads=2, gpu_layers=0))
    engine = load("llama.cpp", LoadOptions(path=tiny_qwen2, n_ctx=128, threads=2, gpu_layers=0))
    gen = Generation(engine, engine.tokenize("hi"), Decoding(temperature=0, max_tokens=3))
    gen.run()
    assert len(gen.tokens) == 3
