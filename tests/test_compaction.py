"""Compaction: when the window fills, the older turns are summarized by the model and
the summary stands in their place; the session keeps every turn whole."""

from __future__ import annotations

import re

import pytest

from chatterm.conversation import compaction
from chatterm.conversation.local import LocalBackend
from chatterm.conversation.turn import Notice
from chatterm.sessions import datasets
from tests.fakes import FakeEngine, fake_loaded


class SummarizingEngine(FakeEngine):
    """Answers "noted N" to questions; asked to summarize (the summarizer's system
    prompt in the prompt), it keeps the lines that hold a number, as a model keeping
    facts would."""

    def sample(self, prompt, sampling, cancelled=lambda: False):
        text = bytes(t for t in prompt if t < 256).decode("utf-8", "replace")
        if compaction.SUMMARIZER in text:
            facts = sorted(set(re.findall(r"locker code is \d+|the boat is called \w+", text, re.I)))
            self.summaries.append(text)
            self.replies.insert(0, (("Notes: " + "; ".join(facts)).encode(), None))
        else:
            self.replies.insert(0, (f"noted {len(self.prompts)}".encode(), None))
        yield from super().sample(prompt, sampling, cancelled)


def summarizing_conversation(n_ctx: int = 1500):
    from chatterm.loader import RunOptions, conversation

    loaded = fake_loaded(n_ctx=n_ctx, sampling={"max_tokens": 60})
    engine = SummarizingEngine(n_ctx=n_ctx)
    engine.summaries = []
    loaded.backend = LocalBackend(engine, "chatml")
    return conversation(loaded, RunOptions()), engine


def ask(conversation, text):
    events = list(conversation.send(text))
    return "".join(e for e in events if isinstance(e, str)), [e for e in events if isinstance(e, Notice)]


def test_a_fact_from_turn_one_survives_forty_turns_in_the_summary(private_dirs):
    conversation, engine = summarizing_conversation()
    ask(conversation, "Remember this: my locker code is 4417.")
    notices = []
    for i in range(40):
        _, told = ask(conversation, f"Here is filler message number {i}, with some words to fill the window.")
        notices += told
    assert notices and "summarized" in notices[0].text
    assert len(engine.summaries) >= 2  # compacted more than once: each summary carried into the next
    last_prompt = bytes(t for t in engine.prompts[-1] if t < 256).decode()
    assert "locker code is 4417" in last_prompt  # the model still sees the fact, in the pinned summary
    assert compaction.PINNED in last_prompt and "Remember this" not in last_prompt
    messages = conversation.messages
    assert messages[1] == {"role": "user", "content": "Remember this: my locker code is 4417."}  # kept whole
    assert sum(1 for m in messages if m["role"] == "user") == 41 and conversation.dropped == 0
    assert conversation.summary.startswith("Notes:") and "4417" in conversation.summary


def test_compact_keeps_the_session_whole_and_exports_use_the_original_turns(private_dirs):
    conversation, engine = summarizing_conversation(n_ctx=4096)
    for text in ("The boat is called Albatross.", "What colour is it?", "And how long?", "Where is it moored?"):
        ask(conversation, text)
    covered = conversation.compact("the boat's name")
    assert covered >= 2 and "keep especially: the boat's name" in engine.summaries[-1]
    assert "Albatross" in conversation.summary
    roles = [m["role"] for m in conversation.messages]
    assert "summary" in roles and roles.count("user") == 4
    reply, _ = ask(conversation, "Name it again.")
    prompt = bytes(t for t in engine.prompts[-1] if t < 256).decode()
    assert "The boat is called Albatross." not in prompt and compaction.PINNED in prompt
    [record] = list(datasets.records(conversation.messages, datasets.Options(unrated=True), datasets.Tally()))
    assert [m["role"] for m in record["messages"]].count("summary") == 0
    assert record["messages"][1]["content"] == "The boat is called Albatross."
    path = conversation.session.save(private_dirs / "boat.json")
    from chatterm import sessions

    again = sessions.read(path)
    assert again.messages == conversation.messages  # a compacted session resumes as it was
    conversation.open(again)
    ask(conversation, "Once more?")
    assert compaction.PINNED in bytes(t for t in engine.prompts[-1] if t < 256).decode()


def test_with_compaction_off_the_oldest_turns_are_left_out(private_dirs):
    conversation, engine = summarizing_conversation()
    conversation.set_sampling("compact", False)
    for i in range(30):
        ask(conversation, f"Filler message number {i}, with some words to fill the window.")
    assert not engine.summaries and conversation.dropped > 0 and conversation.summary is None


def test_too_little_to_compact_is_one_line(private_dirs):
    conversation, _ = summarizing_conversation()
    ask(conversation, "hi")
    from chatterm.errors import ChattermError

    with pytest.raises(ChattermError, match="too little to compact"):
        conversation.compact()


@pytest.mark.slow
def test_compact_with_the_default_model(private_dirs):
    from chatterm.loader import RunOptions
    from tests.helpers import converse

    chat = converse(RunOptions(engine="llama.cpp", threads=2))
    try:
        chat.overrides = {"temperature": 0.0, "max_tokens": 40, "seed": 0}
        for text in ("My name is Ada and I keep bees.", "What do bees make?", "How many legs do they have?"):
            "".join(chat.send(text))
        assert chat.compact() >= 2 and chat.summary
        assert "".join(chat.send("What is my name?")).strip()
    finally:
        chat.engine.close()
