"""The conversation core with a scripted model: history, the window, and every
operation the front ends use."""

from __future__ import annotations

import json

import pytest

from chatterm.conversation import Finish
from chatterm.errors import ChattermError, ContextOverflowError, EngineError
from chatterm.sessions import Session
from chatterm.settings import Sampling, SettingError


def reply(chunks) -> str:
    return "".join(chunks)


def test_history_is_kept_and_token_ids_are_reused(fake_conversation):
    conversation = fake_conversation("one", "two", system="sys")
    assert reply(conversation.send("hi")) == "one"
    first_ids = list(conversation.backend.cache.ids)
    assert reply(conversation.send("again")) == "two"
    engine = conversation.engine
    assert engine.prompts[1][:len(first_ids) - 1] == first_ids[:-1]
    assert [m["role"] for m in conversation.messages] == ["system", "user", "assistant", "user", "assistant"]


def test_every_change_reaches_the_persistence_hook(fake_conversation):
    conversation = fake_conversation("one")
    seen = []
    conversation.on_change = lambda: seen.append([m["role"] for m in conversation.messages])
    reply(conversation.send("hi"))
    assert seen == [["system", "user"], ["system", "user", "assistant"]]  # the question first, on its own
    conversation.set_sampling("temperature", 0.2)
    conversation.undo()
    conversation.set_system("new")
    assert len(seen) == 5


def test_a_prompt_larger_than_the_window_is_refused_and_not_kept(fake_conversation):
    conversation = fake_conversation(n_ctx=100, system=None)
    with pytest.raises(ContextOverflowError, match="context window holds 100"):
        reply(conversation.send("x" * 500))
    assert conversation.messages == []


def test_oldest_turns_are_dropped_to_fit_but_never_the_system_prompt(fake_conversation):
    conversation = fake_conversation(*(["r" * 40] * 6), n_ctx=300, sampling={"max_tokens": 50, "compact": False})
    for i in range(6):
        reply(conversation.send(f"question {i} " + "q" * 30))
    prompt = bytes(conversation.engine.prompts[-1]).decode()
    assert prompt.startswith("<|im_start|>system\nSYS")
    assert "question 5" in prompt and "question 0" not in prompt
    assert conversation.dropped > 0
    assert len(conversation.messages) == 13  # nothing is deleted from the conversation itself


@pytest.mark.parametrize("streamed", ["", "half a rep"])
def test_a_failed_reply_is_recorded_with_its_finish(fake_conversation, streamed):
    conversation = fake_conversation()
    conversation.engine.fail("boom", after=streamed)
    with pytest.raises(EngineError, match="boom"):
        reply(conversation.send("q"))
    assert conversation.messages[-2:] == [{"role": "user", "content": "q"},
                                          {"role": "assistant", "content": streamed, "finish": "error"}]
    assert conversation.last.finish is Finish.ERROR


def test_a_reply_the_reader_abandons_is_recorded_as_cancelled(fake_conversation):
    conversation = fake_conversation("a long reply")
    stream = conversation.send("q")
    next(stream)
    stream.close()  # the front end stopped reading
    assert conversation.messages[-1] == {"role": "assistant", "content": "a", "finish": "cancelled"}


def test_retry_adds_an_alternative_only_once_a_new_reply_exists(fake_conversation):
    conversation = fake_conversation("first", system=None)
    reply(conversation.send("q"))
    engine = conversation.engine
    engine.fail("boom")
    with pytest.raises(EngineError):
        reply(conversation.retry())
    assert conversation.messages == [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "first", "finish": "eog"}]
    cancelled = conversation.retry(lambda: True)
    assert reply(cancelled) == "" and conversation.messages[-1]["content"] == "first"
    engine.queue("second")
    assert reply(conversation.retry()) == "second"
    assert conversation.messages == [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "second", "finish": "eog",
                                      "alternatives": [[{"role": "assistant", "content": "first", "finish": "eog"}]]}]
    assert bytes(engine.prompts[-1]).decode().endswith("q<|im_end|>\n<|im_start|>assistant\n")


def test_retry_and_continue_need_a_reply(fake_conversation):
    conversation = fake_conversation()
    with pytest.raises(ChattermError, match="no reply to retry"):
        reply(conversation.retry())
    with pytest.raises(ChattermError, match="no reply to continue"):
        reply(conversation.continue_reply())


def test_undo_removes_the_last_exchange_or_an_unanswered_question(fake_conversation):
    conversation = fake_conversation("a")
    reply(conversation.send("q1"))
    conversation.messages.append({"role": "user", "content": "q2"})  # as a session file may end
    conversation.undo()
    assert [m["content"] for m in conversation.messages] == ["SYS", "q1", "a"]
    conversation.undo()
    assert [m["content"] for m in conversation.messages] == ["SYS"]
    with pytest.raises(ChattermError, match="nothing to undo"):
        conversation.undo()


def test_the_context_meter_is_measured_again_after_every_change(fake_conversation):
    conversation = fake_conversation("a reply of some length")
    empty = conversation.measure()
    assert empty is not None and empty > 0  # the system prompt, ready for a question
    reply(conversation.send("a question"))
    after_reply = conversation.measure()
    assert after_reply > empty + 30
    conversation.undo()
    assert conversation.measure() == empty
    conversation.set_system("a much longer system prompt than before")
    assert conversation.measure() > empty
    conversation.open(Session(name="other"))
    assert conversation.measure() == len("<|im_start|>assistant\n")


def test_settings_are_checked_and_survive_a_model_switch(fake_conversation, fake_model):
    conversation = fake_conversation(sampling={"max_tokens": 64, "top_k": 10})
    conversation.set_sampling("temperature", 0.3)
    with pytest.raises(SettingError, match=r"top_p = 1.5 is out of range \(0-1\)"):
        conversation.set_sampling("top_p", 1.5)
    with pytest.raises(SettingError, match="max_tokens must be an integer"):
        conversation.set_sampling("max_tokens", 2.5)
    other = fake_model(sampling={"max_tokens": 32})
    conversation.switch(other)
    sampling = conversation.sampling
    assert (sampling.temperature, sampling.max_tokens, sampling.top_k) == (0.3, 32, Sampling().top_k)
    conversation.set_sampling("temperature", None)
    assert conversation.sampling.temperature == Sampling().temperature and conversation.overrides == {}


def test_finish_values_are_what_session_files_store():
    assert [f.value for f in Finish] == ["eog", "stop", "length", "context", "cancelled", "error"]
    assert {f for f in Finish if f.cut} == {Finish.LENGTH, Finish.CANCELLED, Finish.ERROR}
    assert Finish.of("length") is Finish.LENGTH and Finish.of(None) is None and Finish.of("bogus") is None


def test_a_turn_tells_what_happened(fake_conversation):
    conversation = fake_conversation("an answer", "more", system=None)
    turn = conversation.send("q")
    assert not turn.recorded and conversation.messages == []  # nothing happens before it is iterated
    assert reply(turn) == "an answer"
    assert (turn.recorded, turn.started, turn.kept, turn.finish, turn.dropped) == (True, True, True, Finish.EOG, 0)
    assert turn.reply.text == "an answer" and turn.reply is conversation.last
    big = conversation.send("x" * 5000)
    with pytest.raises(ContextOverflowError):
        reply(big)
    assert not big.recorded and big.finish is None and len(conversation.messages) == 2


def test_a_turn_that_cannot_start_records_the_question_with_a_failed_reply(fake_conversation, monkeypatch):
    conversation = fake_conversation(system=None)

    def refuse(*args, **kw):
        raise EngineError("the engine worker is gone")
    monkeypatch.setattr(conversation.backend, "reply", refuse)
    turn = conversation.send("q")
    with pytest.raises(EngineError, match="worker is gone"):
        reply(turn)
    assert turn.recorded and not turn.started and turn.finish is Finish.ERROR
    assert conversation.messages == [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "", "finish": "error"}]


def test_cancelling_a_turn_keeps_what_streamed(fake_conversation):
    conversation = fake_conversation("one two three four", "again")
    turn = conversation.send("q")
    pieces = []
    for piece in turn:
        pieces.append(piece)
        if len(pieces) == 3:
            turn.cancel()
    assert turn.finish is Finish.CANCELLED and turn.kept
    assert conversation.messages[-1] == {"role": "assistant", "content": "".join(pieces), "finish": "cancelled"}
    retry = conversation.retry()
    retry.cancel()  # before its first token: a retry that adds nothing
    assert reply(retry) == "" and not retry.kept and "alternatives" not in conversation.messages[-1]


def test_the_conversation_keeps_its_session_up_to_date(fake_conversation, private_dirs):
    """The session is the conversation's own state: whatever saves it at a change
    (the REPL's autosave) writes what the conversation holds, copying nothing."""
    conversation = fake_conversation("a reply")
    session = conversation.session
    saved = []
    conversation.on_change = lambda: saved.append(json.loads(session.save(private_dirs / "s.json").read_text()))
    conversation.set_sampling("temperature", 0.25)
    reply(conversation.send("q"))
    assert session.messages is conversation.messages and session.sampling == {"temperature": 0.25}
    assert (session.model, session.engine) == ("fake", "fake")
    last = saved[-1]
    assert last["messages"][-2:] == [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "a reply", "finish": "eog"}]
    assert saved[-2]["messages"][-1] == {"role": "user", "content": "q"}  # saved before the reply started
    assert last["sampling"] == {"temperature": 0.25} and last["model"] == "fake"
