"""Tool calls: parsed from each family's syntax as it streams, decided by the user,
run in their own process group, fed back to the model, kept in the session."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chatterm.conversation.turn import Notice
from chatterm.tools import markup, prompting
from chatterm.tools.builtin import BUILTIN
from chatterm.tools.calls import ToolCall, ToolResult
from chatterm.tools.markup import HERMES, LLAMA3, MISTRAL, CallParser
from chatterm.tools.runner import run_process
from chatterm.tools.toolbox import Toolbox, select
from tests.helpers import happened_by, witness


def stream(parser: CallParser, text: str, size: int = 1) -> tuple[str, list[ToolCall]]:
    """`text` fed `size` characters at a time: every marker arrives split."""
    shown, calls = [], []
    for i in range(0, len(text), size):
        for event in parser.feed(text[i:i + size]):
            (shown if isinstance(event, str) else calls).append(event)
    for event in parser.finish():
        (shown if isinstance(event, str) else calls).append(event)
    return "".join(shown), calls


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
@pytest.mark.parametrize("family, text, before, expected", [
    (HERMES, 'Let me look.\n<tool_call>\n{"name": "run", "arguments": {"command": "ls -la"}}\n</tool_call>',
     "Let me look.\n", [("run", {"command": "ls -la"})]),
    (HERMES, '<tool_call>\n<function=write_file>\n<parameter=path>\na.py\n</parameter>\n<parameter=content>\n'
             'print(1)\nprint(2)\n</parameter>\n</function>\n</tool_call>', "",
     [("write_file", {"path": "a.py", "content": "print(1)\nprint(2)"})]),
    (HERMES, 'Two: <tool_call>{"name": "a", "arguments": {}}</tool_call> and <tool_call>'
             '{"name": "b", "arguments": {"n": 1}}</tool_call> done.', "Two:  and  done.",
     [("a", {}), ("b", {"n": 1})]),
    (LLAMA3, '{"name": "run", "parameters": {"command": "pytest -q"}}', "", [("run", {"command": "pytest -q"})]),
    (LLAMA3, 'Sure.<|python_tag|>{"name": "read_file", "parameters": {"path": "x"}}', "Sure.",
     [("read_file", {"path": "x"})]),
    (LLAMA3, '{braces} are not a call', "{braces} are not a call", []),
    (MISTRAL, '[TOOL_CALLS][{"name": "run", "arguments": {"command": "date"}}]', "",
     [("run", {"command": "date"})]),
    (MISTRAL, 'ok[TOOL_CALLS]run[ARGS]{"command": "uname -a"}', "ok", [("run", {"command": "uname -a"})]),
    (HERMES, "a < b and [x] are text, <tool and all", "a < b and [x] are text, <tool and all", []),
    (HERMES, "用中文说：<tool_call>{\"name\": \"run\", \"arguments\": {\"command\": \"echo 你好\"}}</tool_call>",
     "用中文说：", [("run", {"command": "echo 你好"})]),
])
def test_calls_are_parsed_from_each_familys_syntax_split_anywhere(family, text, before, expected, size):
    shown, calls = stream(CallParser(family), text, size)
    assert shown == before
    assert [(c.name, c.arguments) for c in calls] == expected
    assert all(not c.error for c in calls)


def test_a_call_that_does_not_parse_is_an_error_call_never_text():
    shown, calls = stream(CallParser(HERMES), 'x<tool_call>{"name": "run", "arguments": {"command": </tool_call>y')
    assert shown == "xy" and len(calls) == 1
    assert calls[0].arguments is None and "not valid JSON" in calls[0].error and calls[0].name == "run"


def test_the_family_comes_from_the_template():
    assert markup.family_of("{{- '<tool_call>\\n' }}") is HERMES
    assert markup.family_of("[TOOL_CALLS]") is MISTRAL
    assert markup.family_of("{%- if tools %}<|python_tag|>") is LLAMA3
    assert markup.family_of("{% for m in messages %}<|im_start|>") is None


def test_a_reply_without_markers_costs_no_copy():
    parser = CallParser(HERMES)
    piece = "plain words"
    assert parser.feed(piece)[0] is piece


def test_the_runner_kills_the_whole_group_on_cancel_and_caps_output(tmp_path):
    marker = tmp_path / "child-alive"
    flag = {"stop": False}
    start = time.monotonic()

    def cancelled():
        if time.monotonic() - start > 0.5:
            flag["stop"] = True
        return flag["stop"]
    outcome = run_process(["bash", "-c", f"(sleep 3; touch {marker}) & sleep 30"], cancelled=cancelled)
    assert outcome.cancelled and outcome.exit_code is None and time.monotonic() - start < 5
    witness(3, tmp_path / "by-now")  # started after the child: it touches later than the child would have
    happened_by(tmp_path / "by-now")
    assert not marker.exists()  # the background child died with its group
    big = run_process(["python3", "-c", "print('x' * 200000); print('the end')"])
    assert big.exit_code == 0 and "bytes left out" in big.output and big.output.rstrip().endswith("the end")
    slow = run_process(["sleep", "10"], timeout_s=0.5)
    assert slow.timed_out and "killed after" in slow.summary


def conversation_with_tools(fake_conversation, *replies, tools="run,python,read_file,write_file", yes=()):
    conversation = fake_conversation(*replies, sampling={"max_tokens": 1000})
    conversation.toolbox = Toolbox(select(tools), yes)
    return conversation


def drive(turn, decide):
    """Iterate a turn as a front end does: `decide(call)` answers each undecided call."""
    events = []
    for event in turn:
        if isinstance(event, ToolCall) and event.decision is None:
            decide(event)
        events.append(event)
    return events


def test_an_approved_call_runs_and_its_result_goes_back_to_the_model(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = '{"name": "run", "arguments": {"command": "echo made > out.txt; echo done"}}'
    conversation = conversation_with_tools(fake_conversation, f"I will run it.<tool_call>{call}</tool_call>",
                                           "It printed done.")
    events = drive(conversation.send("make a file"), lambda c: c.approve())
    text = "".join(e for e in events if isinstance(e, str))
    assert text == "I will run it.It printed done."
    results = [e for e in events if isinstance(e, ToolResult)]
    assert (tmp_path / "out.txt").read_text() == "made\n" and results[0].summary == "exit 0 · 1 line"
    roles = [m["role"] for m in conversation.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    asked = conversation.messages[2]
    assert asked["content"] == "I will run it." and asked["tool_calls"][0]["function"]["name"] == "run"
    prompt = bytes(conversation.engine.prompts[-1]).decode()
    # chatml has no tool syntax: the tools are taught in the system prompt, results come back as text
    assert "<tools>" in prompt and '"name": "run"' in prompt
    assert "<tool_response>\n[exit code 0]\ndone\n\n</tool_response>" in prompt
    assert "<tool_call>\n{\"name\": \"run\"" in prompt  # the call as the model wrote it, for the next round


def test_a_declined_call_never_runs(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = '{"name": "run", "arguments": {"command": "touch marker"}}'
    conversation = conversation_with_tools(fake_conversation, f"<tool_call>{call}</tool_call>", "OK, I won't.")
    events = drive(conversation.send("q"), lambda c: c.decline())
    assert not (tmp_path / "marker").exists()
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.summary == "declined" and "declined" in conversation.messages[3]["content"]
    assert conversation.messages[-1]["content"] == "OK, I won't."


def test_pre_approved_and_always_calls_run_without_asking(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = '<tool_call>{"name": "run", "arguments": {"command": "echo hi"}}</tool_call>'
    conversation = conversation_with_tools(fake_conversation, call, "done", yes=("run",))
    asked = []
    events = drive(conversation.send("q"), asked.append)
    assert asked == [] and next(e for e in events if isinstance(e, ToolResult)).summary == "exit 0 · 1 line"


def test_the_per_turn_limit_stops_the_calls_with_a_notice(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = [f'<tool_call>{{"name": "run", "arguments": {{"command": "echo {n}"}}}}</tool_call>' for n in range(6)]
    conversation = conversation_with_tools(fake_conversation, "".join(calls[:3]), "".join(calls[3:]), "gave up")
    conversation.toolbox.limit = 4
    events = drive(conversation.send("q"), lambda c: c.approve())
    ran = [e for e in events if isinstance(e, ToolResult) and e.summary.startswith("exit")]
    assert len(ran) == 4
    assert any(isinstance(e, Notice) and "limit of 4" in e.text for e in events)
    assert conversation.messages[-1]["content"] == "gave up"


def test_an_unparsable_call_goes_back_as_an_error_and_the_turn_goes_on(fake_conversation):
    conversation = conversation_with_tools(fake_conversation, '<tool_call>{"name": "run", </tool_call>', "sorry")
    events = drive(conversation.send("q"), lambda c: pytest.fail("an invalid call is not asked about"))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.summary == "did not parse" and conversation.messages[-1]["content"] == "sorry"


def test_ctrl_c_during_a_tool_stops_it_and_the_turn(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = '<tool_call>{"name": "run", "arguments": {"command": "sleep 2; touch late"}}</tool_call>'
    conversation = conversation_with_tools(fake_conversation, call, "never said")
    turn = conversation.send("q")
    start = time.monotonic()

    def approve_then_cancel_soon(c):
        c.approve()
        import threading
        threading.Timer(0.3, turn.cancel).start()
    events = drive(turn, approve_then_cancel_soon)
    assert time.monotonic() - start < 5
    witness(2, tmp_path / "by-now")  # started after the tool: it touches later than the tool would have
    happened_by(tmp_path / "by-now")
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.summary.startswith("stopped (Ctrl-C)") and not (tmp_path / "late").exists()
    assert conversation.messages[-1]["role"] == "tool"  # no answer was asked for after the stop


def test_tools_off_leaves_the_reply_untouched(fake_conversation):
    text = 'look: <tool_call>{"name": "run", "arguments": {}}</tool_call>'
    conversation = fake_conversation(text)
    assert "".join(conversation.send("q")) == text and "tool_calls" not in conversation.messages[-1]


def test_a_session_with_calls_round_trips(fake_conversation, tmp_path, monkeypatch, private_dirs):
    from chatterm import sessions

    monkeypatch.chdir(tmp_path)
    conversation = conversation_with_tools(
        fake_conversation, '<tool_call>{"name": "run", "arguments": {"command": "echo 1"}}</tool_call>', "one")
    drive(conversation.send("q"), lambda c: c.approve())
    session = conversation.session
    session.name = "tools"
    path = session.save()
    data = json.loads(path.read_text())
    assert data["format"] == 3
    again = sessions.load("tools")
    assert again.messages == conversation.messages
    assert [m["role"] for m in again.messages] == ["system", "user", "assistant", "tool", "assistant"]


def test_write_file_shows_the_diff_first(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("one\ntwo\n")
    preview = BUILTIN["write_file"].preview({"path": str(target), "content": "one\n2\n"})
    assert "-two" in preview and "+2" in preview
    assert "new file" in BUILTIN["write_file"].preview({"path": str(tmp_path / "b.txt"), "content": "x"})


def test_native_and_text_prompting_of_calls():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [ToolCall("run", {"command": "ls"}, id="c1").as_message()]},
                {"role": "tool", "tool_call_id": "c1", "name": "run", "content": "a\nb", "summary": "exit 0"}]
    native = prompting.native(messages)
    assert native[1]["tool_calls"][0]["function"]["arguments"] == {"command": "ls"}
    assert native[2] == {"role": "tool", "content": "a\nb", "name": "run", "tool_call_id": "c1"}
    text = prompting.as_text(messages, [BUILTIN["run"].schema()])
    assert text[0]["role"] == "system" and "<tools>" in text[0]["content"]
    assert text[3] == {"role": "user", "content": "<tool_response>\na\nb\n</tool_response>"}
    openai = prompting.openai(messages)
    assert json.loads(openai[1]["tool_calls"][0]["function"]["arguments"]) == {"command": "ls"}


def test_export_writes_tool_calls_in_trls_format(fake_conversation, tmp_path, monkeypatch, private_dirs):
    from chatterm.sessions import datasets, markdown

    monkeypatch.chdir(tmp_path)
    conversation = conversation_with_tools(
        fake_conversation, '<tool_call>{"name": "run", "arguments": {"command": "echo 42"}}</tool_call>',
        "The answer is 42.")
    drive(conversation.send("what does echo 42 print?"), lambda c: c.approve())
    conversation.rate(None, "good")
    tally = datasets.Tally()
    [record] = list(datasets.records(conversation.messages, datasets.Options(format="sft"), tally))
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert record["messages"][2]["tool_calls"] == [{"type": "function",
                                                    "function": {"name": "run", "arguments": {"command": "echo 42"}}}]
    assert record["messages"][3]["name"] == "run" and "42" in record["messages"][3]["content"]
    assert record["tools"] == [BUILTIN["run"].schema()]
    assert conversation.messages[-1]["rating"] == "good"  # the rating is the final answer's
    [kto] = list(datasets.records(conversation.messages, datasets.Options(format="kto"), datasets.Tally()))
    assert kto["completion"][0]["content"] == "The answer is 42." and kto["prompt"][-1]["role"] == "tool"
    text = markdown.transcript(conversation.session)
    assert "## Tool result (run: exit 0 · 1 line)" in text and "Calls `run`:" in text


TEMPLATES = Path(__file__).parent / "templates"
FAMILY_REPLIES = {
    "qwen25": ('<tool_call>\n{"name": "run", "arguments": {"command": "echo 7"}}\n</tool_call>',
               ["<tools>\n{\"type\": \"function\"", '<tool_call>\n{"name": "run", "arguments": {"command": "echo 7"}}',
                "<|im_start|>user\n<tool_response>\n[exit code 0]\n7\n\n</tool_response><|im_end|>"]),
    "llama32": ('{"name": "run", "parameters": {"command": "echo 7"}}',
                ["Environment: ipython", '"name": "run"', '{"name": "run", "parameters": {"command": "echo 7"}}<|eot_id|>',
                 "<|start_header_id|>ipython<|end_header_id|>\n\n[exit code 0]\n7\n<|eot_id|>"]),
    "mistral": ('[TOOL_CALLS] [{"name": "run", "arguments": {"command": "echo 7"}}]',
                ["[AVAILABLE_TOOLS] [{\"type\": \"function\"", '[TOOL_CALLS] [{"name": "run", "arguments": {"command": "echo 7"}, "id": "',
                 '[TOOL_RESULTS] {"content": "[exit code 0]\\n7\\n", "call_id": "']),
    "qwen3coder": ("<tool_call>\n<function=run>\n<parameter=command>\necho 7\n</parameter>\n</function>\n</tool_call>",
                   ["<function>\n<name>run</name>", "<function=run>\n<parameter=command>\necho 7\n</parameter>",
                    "<tool_response>\n[exit code 0]\n7\n\n</tool_response>"]),
}


@pytest.mark.parametrize("name", sorted(FAMILY_REPLIES))
def test_each_familys_template_renders_tools_calls_and_results(name, fake_model, tmp_path, monkeypatch):
    """A call in the family's syntax is parsed, run, and rendered back through a template
    of that family's structure (in the sandboxed template worker), with the tools offered."""
    from chatterm.conversation.local import LocalBackend
    from chatterm.conversation.templates import ChatTemplate
    from chatterm.loader import RunOptions
    from chatterm.loader import conversation as make

    monkeypatch.chdir(tmp_path)
    source = (TEMPLATES / f"{name}.jinja").read_text()
    reply, expected = FAMILY_REPLIES[name]
    loaded = fake_model(reply, "It printed 7.", sampling={"max_tokens": 400})
    loaded.backend = LocalBackend(loaded.backend.engine, ChatTemplate(source, name="model file"))
    conversation = make(loaded, RunOptions(tools=("run",)))
    assert loaded.tool_syntax == {"llama32": "llama3", "mistral": "mistral"}.get(name, "hermes")
    events = drive(conversation.send("what does echo 7 print?"), lambda c: c.approve())
    assert [e.summary for e in events if isinstance(e, ToolResult)] == ["exit 0 · 1 line"]
    assert conversation.messages[-1]["content"] == "It printed 7."
    # (the fake's end-of-turn id, 256, is in the prompt cache's ids: it has no bytes)
    prompt = bytes(t for t in conversation.engine.prompts[-1] if t < 256).decode()
    for part in expected:
        assert part in prompt, (part, prompt)


def test_a_server_streams_tool_calls_and_gets_the_results_back(tmp_path, monkeypatch):
    from chatterm.loader import RunOptions
    from tests.fakeserver import DONE, FakeServer, call_events, event
    from tests.helpers import converse

    monkeypatch.chdir(tmp_path)
    arguments = json.dumps({"command": "echo 你好 > hi.txt; cat hi.txt"}, ensure_ascii=False)
    with FakeServer([event("It said 你好."), DONE], replies=[[event("Running it. "), *call_events("run", arguments)]]) as fake:
        chat = converse(RunOptions(base_url=fake.url, tools=("run",)))
        events = drive(chat.send("say hello in Chinese into a file"), lambda c: c.approve())
        first, second = [r["json"] for r in fake.requests if r["path"].endswith("chat/completions")]
    assert first["tools"] == [BUILTIN["run"].schema()]
    call = next(e for e in events if isinstance(e, ToolCall))
    assert (call.name, call.arguments, call.id) == ("run", json.loads(arguments), "call-1")
    assert (tmp_path / "hi.txt").read_text() == "你好\n"
    assistant, tool = second["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "call-1" and json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == json.loads(arguments)
    assert tool == {"role": "tool", "tool_call_id": "call-1", "content": "[exit code 0]\n你好\n"}
    assert chat.messages[-1]["content"] == "It said 你好."


def test_a_server_without_a_tool_parser_passes_markup_that_is_still_read(tmp_path, monkeypatch):
    from chatterm.loader import RunOptions
    from tests.fakeserver import DONE, FakeServer, event
    from tests.helpers import converse

    monkeypatch.chdir(tmp_path)
    markup_reply = '<tool_call>\n{"name": "list_files", "arguments": {}}\n</tool_call>'
    pieces = [event(markup_reply[i:i + 4]) for i in range(0, len(markup_reply), 4)]
    with FakeServer([event("done"), DONE], replies=[[*pieces, DONE]]) as fake:
        chat = converse(RunOptions(base_url=fake.url, tools=("list_files",)))
        events = drive(chat.send("what is here?"), lambda c: c.approve())
    assert "".join(e for e in events if isinstance(e, str)) == "done"
    assert [e.call.name for e in events if isinstance(e, ToolResult)] == ["list_files"]


@pytest.mark.slow
def test_the_default_model_writes_schema_valid_calls_under_the_grammar(tmp_path, monkeypatch):
    """llama.cpp with the call grammar: told to call (tool_choice "required"), even a
    135M model writes calls that parse and fit their tool's schema, Chinese included."""
    from chatterm.loader import RunOptions
    from chatterm.sessions import Session
    from chatterm.tools.toolbox import check_arguments
    from tests.helpers import converse

    monkeypatch.chdir(tmp_path)
    chat = converse(RunOptions(engine="llama.cpp", threads=2, tools=("run", "read_file", "write_file"),
                               tool_choice="required"))
    try:
        for question in ("List the files here.", "Show me what notes.txt says.", "写一个文件 hello.txt，内容是你好"):
            chat.open(Session(name="", messages=[]))
            chat.overrides = {"temperature": 0.7, "max_tokens": 160, "seed": 7}
            calls = drive(chat.send(question), lambda c: c.decline())
            call = next(e for e in calls if isinstance(e, ToolCall))
            assert call.error == "" and call.name in chat.toolbox.tools, call
            assert check_arguments(chat.toolbox.tools[call.name], call.arguments) == "", call
    finally:
        chat.engine.close()


@pytest.mark.slow
def test_the_lazy_grammar_leaves_text_before_a_call_alone():
    """Until the model writes <tool_call> the grammar is asleep: greedy text is the same
    with the tools' grammar in the sampler chain as without it."""
    from chatterm.engines import load
    from chatterm.engines.base import LoadOptions
    from chatterm.models.catalog import Catalog
    from chatterm.settings import Decoding

    engine = load("llama.cpp", LoadOptions(path=Catalog.load().models["smollm2"].model_path(), n_ctx=1024, threads=2))
    prompt = engine.tokenize("<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n")
    greedy = Decoding(temperature=0.0, max_tokens=40, seed=0)
    plain = b"".join(t.piece for t in engine.generate(prompt, greedy, limit=40))
    engine.reset()
    lazy = greedy.updated(call_schemas=[BUILTIN["run"].schema()])
    with_grammar = b"".join(t.piece for t in engine.generate(prompt, lazy, limit=40))
    assert plain == with_grammar and b"<tool_call>" not in plain and len(plain) > 20


def test_hostile_arguments_are_folded_and_shown_as_they_are():
    from chatterm.ui import tool_views

    huge = ToolCall("run", {"command": "x" * (1 << 20)})
    shown, left = tool_views.folded(tool_views.body(huge, "command"))
    assert len(shown) < 400 and shown.endswith(f"… (+{(1 << 20) - tool_views.WIDE} characters)") and left == 0
    many = ToolCall("python", {"code": "\n".join(f"line {i}" for i in range(100))})
    shown, left = tool_views.folded(tool_views.body(many, "code"))
    assert shown.count("\n") == tool_views.FOLD - 1 and left == 100 - tool_views.FOLD
    upward = ToolCall("read_file", {"path": "../../etc/passwd"})
    assert tool_views.collapsed("read_file", upward.arguments, "3 lines", 1, "path") == \
        "▸ read_file: ../../etc/passwd · 3 lines  (/tool 1)"


def test_retry_edit_alt_and_continue_work_across_calls(fake_conversation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    call = '<tool_call>{"name": "run", "arguments": {"command": "echo a"}}</tool_call>'
    conversation = conversation_with_tools(fake_conversation, call, "first answer", call, "second answer",
                                           "edited answer", " and more")
    asked = []
    drive(conversation.send("q"), lambda c: (asked.append(c.name), c.approve()))
    retry = conversation.retry()
    drive(retry, lambda c: (asked.append(c.name), c.decline()))  # the model called again: asked again
    assert asked == ["run", "run"] and retry.kept
    roles = [m["role"] for m in conversation.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert conversation.messages[4]["alternatives"][0][0]["content"] == "first answer"
    drive(conversation.edit(1, "q again"), lambda c: pytest.fail("no call this time"))
    assert conversation.messages[-1]["content"] == "edited answer"
    assert len(conversation.messages[1]["alternatives"]) == 1  # the whole tool exchange is kept as it was
    "".join(conversation.continue_reply())
    assert conversation.messages[-1]["content"] == "edited answer and more"
    conversation.choose(1, 1)  # back to the first question and its calls
    assert [m["role"] for m in conversation.messages][-3:] == ["assistant", "tool", "assistant"]


@pytest.mark.slow
def test_once_the_model_writes_the_marker_its_call_keeps_to_the_schema():
    """Shown calls with a wrong argument name ("cmd"), the default model copies them;
    with the tools' grammar, the text up to <tool_call> is the same and the call
    that follows is `run`'s own ({"command": ...})."""
    from chatterm.engines import load
    from chatterm.engines.base import LoadOptions
    from chatterm.models.catalog import Catalog
    from chatterm.settings import Decoding
    from chatterm.tools.toolbox import check_arguments

    engine = load("llama.cpp", LoadOptions(path=Catalog.load().models["smollm2"].model_path(), n_ctx=2048, threads=2))
    shots = "".join(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\nSure.\n<tool_call>\n"
                    f'{{"name": "run", "arguments": {{"cmd": "{c}"}}}}\n</tool_call><|im_end|>\n'
                    for q, c in (("list files", "ls"), ("show the date", "date"), ("who am I", "whoami")))
    prompt = engine.tokenize(shots + "<|im_start|>user\nshow the kernel version<|im_end|>\n<|im_start|>assistant\n")
    outputs = []
    for schemas in (None, [BUILTIN["run"].schema()]):
        engine.reset()
        sampling = Decoding(temperature=0.0, max_tokens=60, seed=0, call_schemas=schemas)
        outputs.append(b"".join(t.piece for t in engine.generate(prompt, sampling, limit=60)).decode())
    free, kept = outputs
    before = free.split("<tool_call>")[0]
    assert before and kept.startswith(before + "<tool_call>")
    shown, calls = stream(CallParser(HERMES), kept)
    assert shown == before and len(calls) == 1
    assert calls[0].name == "run" and check_arguments(BUILTIN["run"], calls[0].arguments) == ""
    _, unconstrained = stream(CallParser(HERMES), free)
    assert not unconstrained or check_arguments(BUILTIN["run"], unconstrained[0].arguments or {}) != ""


def test_the_marker_watch_looks_at_a_constant_window():
    from chatterm.engines.call_grammar import MarkerWatch

    watch = MarkerWatch()
    assert [watch.feed(p) for p in (b"text <to", b"ol_c", b"all>", b"\n{")][:3] == [None, None, b""]
    watch = MarkerWatch()
    for _ in range(10000):
        assert watch.feed(b"long reply ") is None
    assert len(watch._tail) < len(watch.marker)


def test_a_role_offers_its_tools(fake_model, private_dirs):
    from chatterm import roles
    from tests.helpers import drive as drive_repl

    coder = roles.find("coder")
    assert "run" in coder.tools and "python" in coder.tools
    repl, out = drive_repl("/role coder\r/tools\r", fake_model())
    assert "tools on: run, python" in out and repl.conversation.toolbox.tools.keys() >= {"run", "python", "write_file"}
    assert "run" in out and "on" in out


def test_always_lasts_for_the_session_only(fake_conversation):
    from chatterm.sessions import Session

    conversation = conversation_with_tools(fake_conversation)
    conversation.toolbox.always.add("run")
    conversation.open(Session(name="other"))
    assert conversation.toolbox.always == set()
