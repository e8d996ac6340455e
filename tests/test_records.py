"""The records front ends read (`chatterm.records`), and the one after-reply path."""

from __future__ import annotations

import pytest

from chatterm import branches
from chatterm.records import Finish, Message, Rating, ToolCall
from chatterm.tools.toolbox import Toolbox, select
from chatterm.ui.after_reply import after_reply


def test_every_message_a_conversation_stores_reads_back_whole(fake_conversation, tmp_path, monkeypatch):
    """What the conversation writes (questions, replies, a call and its result, a rating,
    a retry's alternatives) is what `Message.of` reads and `.stored` writes back."""
    monkeypatch.chdir(tmp_path)
    call = '<tool_call>{"name": "run", "arguments": {"command": "echo 你好"}}</tool_call>'
    conversation = fake_conversation(call, "It printed 你好.", "Second try.", sampling={"max_tokens": 1000})
    conversation.toolbox = Toolbox(select("run"), ("run",))
    list(conversation.send("say hello"))
    conversation.rate(None, "good", "clear")
    list(conversation.retry())
    stored = conversation.messages
    roles = [m["role"] for m in stored]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    for m in stored:
        assert Message.of(m).stored() == branches.bare(m)
    call_message, result, reply = (Message.of(m) for m in stored[2:])
    assert call_message.tool_calls[0].name == "run" and call_message.tool_calls[0].arguments == {"command": "echo 你好"}
    assert result.tool_call_id == call_message.tool_calls[0].id and result.name == "run" and "你好" in result.content
    assert (reply.content, reply.finish, reply.version, reply.versions) == ("Second try.", Finish.EOG, 2, 2)
    older = Message.of(branches.versions(stored, 4)[0][0])
    assert older.rating == Rating("good", "clear") and older.rating.text == "✓ good: clear"
    assert conversation.records() == [Message.of(m) for m in stored]


@pytest.mark.parametrize("stored, expected", [
    ({"role": "assistant", "content": "old file"}, Message("assistant", "old file")),
    ({"role": "assistant", "content": "x", "finish": "sideways", "rating": "meh", "note": 3},
     Message("assistant", "x")),
    ({"role": "assistant", "content": "", "tool_calls": [{"id": "a1", "function": {"name": "run",
                                                                                   "arguments": '{"command": "ls"}'}}]},
     Message("assistant", "", tool_calls=(ToolCall("run", {"command": "ls"}, id="a1", decision="yes"),))),
    ({"role": "assistant", "content": "", "tool_calls": [{"id": "b2", "function": {"name": "run",
                                                                                   "arguments": "not json"}}]},
     Message("assistant", "", tool_calls=(ToolCall("run", {"_unparsed": "not json"}, id="b2", decision="yes"),))),
])
def test_old_and_odd_files_read_as_records(stored, expected):
    """Files of format 1 and 2 have no finish; a value chatterm never wrote is left out,
    never passed on; a call's arguments as a JSON string (OpenAI's shape) parse."""
    assert Message.of(stored) == expected


def test_after_reply_says_the_same_for_every_front_end(fake_conversation):
    conversation = fake_conversation("a reply much longer than two tokens", sampling={"max_tokens": 2})
    turn = conversation.send("q")
    list(turn)
    said = after_reply(turn, None)
    assert [(s.text, s.kind) for s in said] == [("(reached max_tokens: /continue resumes it)", "ending")]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    json_reply = fake_conversation('{"a": "not a number"}')
    json_reply.schema = schema
    turn = json_reply.send("q")
    list(turn)
    [problem] = after_reply(turn, schema)
    assert problem.kind == "error" and "a" in problem.text
    failed = after_reply(turn, schema, failure="the engine stopped")
    assert [(s.text, s.kind) for s in failed] == [("the engine stopped", "error")]  # no schema check on a failure
