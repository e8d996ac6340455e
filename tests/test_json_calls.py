"""Calls written as JSON (a fenced block, or an object at a line start), as small
models write them: read when they name an offered tool with only `arguments` beside
it, text otherwise, whatever the split; the call grammar arms at their head."""

from __future__ import annotations

import json

import pytest

from chatterm.conversation.turn import Notice
from chatterm.engines.call_grammar import JsonCallWatch, json_call_gbnf
from chatterm.tools.builtin import BUILTIN
from chatterm.tools.calls import ToolCall, ToolResult
from chatterm.tools.intent import Repeats, written_as_text
from chatterm.tools.markup import HERMES, LLAMA3, MISTRAL, CallParser
from tests.test_tools import conversation_with_tools, drive, stream

TOOLS = ("python", "get_weather")
WEATHER = '{"name": "get_weather", "arguments": {"city": "北京"}}'


def every_split(text: str, family=HERMES, tools=TOOLS) -> tuple[str, list[ToolCall]]:
    """The parse of `text` fed whole, asserted the same for every cut into two pieces
    and for every piece size: no boundary changes what is read."""
    whole = stream(CallParser(family, tools), text, len(text) or 1)
    for size in range(1, len(text) + 1):
        shown, calls = stream(CallParser(family, tools), text, size)
        assert (shown, [(c.name, c.arguments) for c in calls]) == (whole[0], [(c.name, c.arguments) for c in whole[1]])
    for cut in range(1, len(text)):
        parser = CallParser(family, tools)
        events = parser.feed(text[:cut]) + parser.feed(text[cut:]) + parser.finish()
        shown = "".join(e for e in events if isinstance(e, str))
        assert shown == whole[0], cut
    return whole


@pytest.mark.parametrize("text, shown, expected", [
    (f"Sure.\n```json\n{WEATHER}\n```", "Sure.\n", [("get_weather", {"city": "北京"})]),
    (f"```json\n{WEATHER}\n```\n\n", "\n\n", [("get_weather", {"city": "北京"})]),
    # calls one after another, each followed by nothing but calls and white space
    (f"```json\n{WEATHER}\n```\n{WEATHER}", "\n", [("get_weather", {"city": "北京"})] * 2),
    (f"```\n{WEATHER}\n```", "", [("get_weather", {"city": "北京"})]),
    ('```json\n{\n  "name": "python",\n  "arguments": {\n    "code": "print(\'}\')"\n  }\n}\n```', "",
     [("python", {"code": "print('}')"})]),
    ('```json\n{"name": "python", "parameters": {"code": "1"}}\n```', "", [("python", {"code": "1"})]),
    (f"{WEATHER}", "", [("get_weather", {"city": "北京"})]),
    (f"Let me check.\n{WEATHER}\n", "Let me check.\n\n", [("get_weather", {"city": "北京"})]),
    # the closing fence never came (the reply ended): the object is whole, so it is a call
    (f"```json\n{WEATHER}", "", [("get_weather", {"city": "北京"})]),
    # the template's own syntax still works beside it
    (f"<tool_call>\n{WEATHER}\n</tool_call>", "", [("get_weather", {"city": "北京"})]),
])
def test_a_call_written_as_json_is_read_split_anywhere(text, shown, expected):
    got_shown, calls = every_split(text)
    assert got_shown == shown
    assert [(c.name, c.arguments) for c in calls] == expected and all(not c.error for c in calls)


@pytest.mark.parametrize("text", [
    # an example in an explanation: more keys than a call has
    'A call looks like this:\n```json\n{"name": "get_weather", "arguments": {"city": "x"}, "id": 1}\n```\nok',
    # a tool not offered
    'Example:\n```json\n{"name": "send_mail", "arguments": {"to": "x"}}\n```',
    # JSON that is data, not a call
    '```json\n{"name": "chatterm", "version": "1.0"}\n```',
    '```json\n{"name": "python"}\n```',
    # more inside the fence than the object
    '```json\n{"name": "python", "arguments": {"code": "1"}}\nmore text\n```',
    # another language's fence, whatever it holds
    '```python\nx = {"name": "python", "arguments": {"code": "1"}}\n```',
    '```python\nprint(1)\n```\nthen\n```js\n{"name": "python", "arguments": {}}\n```',
    # inside an open fence, a line that looks like a call is code
    '```\nsetup\n{"name": "python", "arguments": {"code": "1"}}\n```',
    # not at a line start
    'inline {"name": "python", "arguments": {"code": "1"}} is prose',
    # an object that is no call at all
    '{x: 1} and {"a": 2}\n{"arguments": {}, "name": "python"}',
    # a call shown in an explanation: text follows it, so it is no call (issue 39)
    f"```json\n{WEATHER}\n```\nDone.",
    f"A call looks like this:\n```json\n{WEATHER}\n```\nand its result comes back.",
    f"For example:\n{WEATHER}\nor\n```json\n{WEATHER}\n```\nThat is all.",
    # a cut call stays text (nothing runs)
    '```json\n{"name": "python", "arguments": {"code": "pri',
    '``` ` `` `\n``',
])
def test_json_that_is_no_call_stays_text_exactly(text):
    shown, calls = every_split(text)
    assert calls == [] and shown == text


def test_without_offered_tools_json_is_never_read():
    shown, calls = every_split(f"```json\n{WEATHER}\n```", tools=())
    assert calls == [] and shown.startswith("```json")


@pytest.mark.parametrize("family", [LLAMA3, MISTRAL])
def test_other_families_read_fenced_calls_too(family):
    shown, calls = every_split(f"Checking.\n```json\n{WEATHER}\n```", family=family)
    assert shown == "Checking.\n" and [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "北京"})]


def test_invalid_json_naming_an_offered_tool_is_a_call_gone_wrong():
    _, calls = every_split('```json\n{"name": "python", "arguments": {"code": "x" "y"}}\n```')
    assert len(calls) == 1 and calls[0].arguments is None and "not valid JSON" in calls[0].error


def test_a_long_call_costs_the_same_per_piece():
    """The object's end is found by one pass: feeding a 200 KB argument one
    character at a time stays linear (this would take minutes if each piece rescanned)."""
    code = "x = 1\n" * 35_000
    text = "```json\n" + json.dumps({"name": "python", "arguments": {"code": code}}) + "\n```"
    shown, calls = stream(CallParser(HERMES, TOOLS), text, 1)
    assert shown == "" and calls[0].arguments == {"code": code}


# ------------------------------------------------------------------ the grammar's trigger
@pytest.mark.parametrize("text, expected", [
    ('```json\n{"name": "python"', ("python", True, b"")),
    ('Now:\n```json\n{\n  "name" : "python",', ("python", True, b",")),
    ('{"name": "get_weather", "arg', ("get_weather", False, b", \"arg")),
    ('text\n{"name": "python"', ("python", False, b"")),
])
def test_the_watch_arms_at_a_json_calls_head_split_anywhere(text, expected):
    data = text.encode()
    for size in range(1, len(data) + 1):
        watch = JsonCallWatch(list(TOOLS))
        fired = [r for i in range(0, len(data), size) if (r := watch.feed(data[i:i + size])) is not None]
        name, fenced, rest = fired[0]
        assert len(fired) == 1 and (name, fenced) == expected[:2] and expected[2].startswith(rest)
        if size == len(data):
            assert rest == expected[2]


@pytest.mark.parametrize("text", [
    'inline {"name": "python"',  # not at a line start
    '```json\n{"name": "send_mail"',  # not offered
    '```json\n{"type": "python"',
    '```python\n{"name": "pythonic"',
])
def test_the_watch_stays_off_for_what_is_no_call(text):
    watch = JsonCallWatch(list(TOOLS))
    assert all(watch.feed(bytes([b])) is None for b in text.encode() + b'" and more\n')


def test_the_watch_looks_at_a_constant_window():
    watch = JsonCallWatch(list(TOOLS))
    for _ in range(10000):
        assert watch.feed(b'a "long" reply ') is None
    assert len(watch._window) <= watch.WINDOW


@pytest.mark.parametrize("written, head", [
    (b"", '"," space "\\"arguments\\"" space ":" space'),
    (b', "argu', '"ments\\"" space ":" space'),
    (b', "arguments": ', ""),
])
def test_the_grammar_continues_from_what_the_model_wrote(written, head):
    gbnf = json_call_gbnf(BUILTIN["python"].schema(), True, written)
    assert gbnf.startswith(f"root ::= {head}".rstrip() + " ") and '"```"' in gbnf.splitlines()[0]


@pytest.mark.parametrize("written", [b'}', b', "parameters"', b', "arguments": {'])
def test_no_grammar_when_the_model_went_another_way(written):
    assert json_call_gbnf(BUILTIN["python"].schema(), True, written) is None


# ------------------------------------------------------------------ the loop around calls
@pytest.mark.parametrize("text, name", [
    ("import tools\ntools.python(code='print(1)')", "python"),
    ('I would call python(code="1+1") here.', "python"),
    ('```json\n{"name": "python", "arguments": {}, "output": "2"}\n```', "python"),
    ('```json\n{"name": "python", "arguments": {}, "output": "2"}\n```\n\n', "python"),
    # a call shown mid-reply is an example, not a call written as text
    ('A call looks like\n```json\n{"name": "python", "arguments": {"code": "1"}}\n```\nthen it runs.', None),
    ("After running the code, I found it works.", None),
    ("Use python3 to run it.", None),
])
def test_a_call_written_as_text_is_recognized(text, name):
    assert written_as_text(text, ["python", "run"]) == name


def test_a_call_written_as_text_gets_the_model_told_once(fake_conversation):
    conversation = conversation_with_tools(fake_conversation, "I ran tools.python(code='print(2)') and got 2.",
                                           "I still cannot.", "never asked")
    events = drive(conversation.send("what is 1+1?"), lambda c: pytest.fail("no real call was made"))
    results = [e for e in events if isinstance(e, ToolResult)]
    assert len(results) == 1 and results[0].summary == "did not parse"
    assert "<tool_call>" in results[0].text and '"name": "python"' in results[0].text
    assert conversation.messages[-1]["content"] == "I still cannot."  # told once, not in a loop


def test_an_identical_call_is_not_run_twice(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = '<tool_call>{"name": "run", "arguments": {"command": "echo x >> log"}}</tool_call>'
    conversation = conversation_with_tools(fake_conversation, call, call, "done")
    events = drive(conversation.send("q"), lambda c: c.approve())
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.summary for r in results] == ["exit 0 · 0 lines", "not run: a repeat"]
    assert (tmp_path / "log").read_text() == "x\n" and "[exit code 0]" in results[1].text
    assert conversation.messages[-1]["content"] == "done"


def test_repeats_compare_arguments_not_text():
    repeats = Repeats()
    repeats.remember(ToolCall("run", {"a": 1, "b": 2}), "it gave 3")
    repeats.remember(ToolCall("run", None, error="x"), "did not parse")
    assert repeats.earlier(ToolCall("run", {"b": 2, "a": 1})) == "it gave 3"
    assert repeats.earlier(ToolCall("run", {"a": 2})) is None
    assert repeats.earlier(ToolCall("run", None, error="x")) == "did not parse"  # the same malformed call
    assert repeats.earlier(ToolCall("run", None, raw='{"name": "run", "x"', error="x")) is None  # another


def test_a_reply_that_shows_the_call_format_runs_nothing(fake_conversation, tmp_path, monkeypatch):
    """Prose, a fenced call, more prose, with python pre-approved: no call, no hint
    that holds the next reply to a call; one model call, the reply as written."""
    monkeypatch.chdir(tmp_path)
    shown = ('To run code, the model writes:\n```json\n'
             '{"name": "python", "arguments": {"code": "open(\'ran\', \'w\')"}}\n```\nand chatterm runs it.')
    conversation = conversation_with_tools(fake_conversation, shown, "never asked", yes=("python",))
    events = drive(conversation.send("How does a tool call look?"), lambda c: pytest.fail("no call was made"))
    assert not [e for e in events if isinstance(e, ToolResult)] and not (tmp_path / "ran").exists()
    assert conversation.messages[-1]["content"] == shown and len(conversation.engine.prompts) == 1


@pytest.mark.parametrize("written", [f"```json\n{WEATHER}\n```", f"<tool_call>\n{WEATHER}\n</tool_call>", WEATHER])
def test_a_call_the_user_asked_to_quote_stays_text(written):
    """The question holds the call as written: the reply repeating it quotes it."""
    question = f"Repeat this block exactly, and nothing else:\n{written}"
    for size in (1, 3, len(written)):
        shown, calls = stream(CallParser(HERMES, TOOLS, quoted=question), written, size)
        assert calls == [] and shown == written
    _, calls = stream(CallParser(HERMES, TOOLS, quoted="What is the weather in Beijing?"), written, 3)
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "北京"})]


def test_a_call_is_run_again_once_another_call_ran_in_between(fake_conversation, tmp_path, monkeypatch):
    """Read, write, read: the second read runs (a stale result would be a lie)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("old\n")
    read = '<tool_call>{"name": "run", "arguments": {"command": "cat f"}}</tool_call>'
    write = '<tool_call>{"name": "run", "arguments": {"command": "echo new > f"}}</tool_call>'
    conversation = conversation_with_tools(fake_conversation, read, write, read, read, "done", yes=("run",))
    events = drive(conversation.send("q"), lambda c: pytest.fail("pre-approved"))
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.summary for r in results][2:] == ["exit 0 · 1 line", "not run: a repeat"]
    assert "new" in results[2].text and "old" not in results[2].text


def test_repeats_forget_what_came_before_a_run():
    repeats = Repeats()
    repeats.remember(ToolCall("run", {"a": 1}), "it gave 1", ran=True)
    repeats.remember(ToolCall("run", {"a": 2}), "declined")
    assert repeats.earlier(ToolCall("run", {"a": 1})) == "it gave 1"
    repeats.remember(ToolCall("run", {"a": 3}), "it gave 3", ran=True)
    assert repeats.earlier(ToolCall("run", {"a": 1})) is None and repeats.earlier(ToolCall("run", {"a": 2})) is None
    assert repeats.earlier(ToolCall("run", {"a": 3})) == "it gave 3"


@pytest.mark.parametrize("question", [
    "Write it and run it on 6 and 7.",
    "Don't run it, just explain what this does: print(sum(range(10)))",
    "Check this paragraph for grammar: the results was good.",
    "Test your knowledge: what is 2+2?",
])
def test_no_question_is_forced_into_a_call(fake_conversation, tmp_path, monkeypatch, question):
    """Running the answer's code is chatterm's job (conversation.verify), never a call
    the model is pushed into: a reply without a call stands, after one model call."""
    monkeypatch.chdir(tmp_path)
    conversation = conversation_with_tools(fake_conversation, "It prints 45.", "never asked", yes=("python",))
    events = drive(conversation.send(question), lambda c: pytest.fail("no call was made"))
    assert not [e for e in events if isinstance(e, ToolResult)]
    assert conversation.messages[-1]["content"] == "It prints 45." and len(conversation.engine.prompts) == 1


def test_a_model_that_only_repeats_its_call_is_stopped(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = '<tool_call>{"name": "run", "arguments": {"command": "echo x >> log"}}</tool_call>'
    conversation = conversation_with_tools(fake_conversation, call, call, call, call, "never asked", yes=("run",))
    events = drive(conversation.send("q"), lambda c: pytest.fail("pre-approved"))
    results = [e.summary for e in events if isinstance(e, ToolResult)]
    assert results == ["exit 0 · 0 lines", "not run: a repeat", "not run: a repeat"]
    assert any(isinstance(e, Notice) and "same call 3 times" in e.text for e in events)
    assert (tmp_path / "log").read_text() == "x\n" and conversation.messages[-1]["role"] == "tool"


def test_a_python_program_that_prints_nothing_or_misses_a_name_says_why():
    from chatterm.tools.builtin import FRESH_NOTE

    quiet = BUILTIN["python"].run({"code": "def area(r):\n    return 3 * r * r\n"}, lambda: False)
    assert quiet.ok and "defines area but never prints" in quiet.text
    missing = BUILTIN["python"].run({"code": "print(area(2))"}, lambda: False)
    assert not missing.ok and "NameError" in missing.text and missing.text.endswith(FRESH_NOTE)
    fine = BUILTIN["python"].run({"code": "def f():\n    return 1\nprint(f())"}, lambda: False)
    assert fine.text == "[exit code 0]\n1\n"


def test_a_result_the_model_writes_itself_is_cut_and_it_is_told(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conversation = conversation_with_tools(fake_conversation, "```python\nprint(2)\n```\n<tool_response>\n2\n",
                                           "ok", yes=("python",))
    events = drive(conversation.send("what does it print?"), lambda c: pytest.fail("nothing to ask"))
    first = conversation.messages[2]
    assert first["content"] == "```python\nprint(2)\n```\n" and first["finish"] == "stop"
    result = next(e for e in events if isinstance(e, ToolResult))
    assert "you cannot write them yourself" in result.text and '"code": "print(2)' in result.text


def test_the_examples_a_docstring_shows_become_prints():
    from chatterm.tools.intent import example_prints

    code = ('def f(xs):\n    """Sum.\n    >>> f([1, 2])\n    3\n    >>> ys = [4]\n    >>> f(ys) == 4\n    True\n'
            '    >>> import math\n    """\n    return sum(xs)\n')
    assert example_prints(code) == ["print(f([1, 2]))", "print(f(ys) == 4)"]
    assert example_prints("def g():\n    return 1\n") == []
    quiet = BUILTIN["python"].run({"code": code}, lambda: False)
    assert "outside any function:\nprint(f([1, 2]))\nprint(f(ys) == 4)" in quiet.text
