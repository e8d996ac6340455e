"""Code answers checked by chatterm: the examples a question gives, the program that
runs them against the answer, and the conversation that keeps a passing answer and
samples again where one fails (a scripted engine here; the real model in
test_real_model.py)."""

from __future__ import annotations

import json

import pytest

from chatterm import branches
from chatterm.checking import examples
from chatterm.checking.examples import OUTPUT, RAISES, VALUE, extract
from chatterm.checking.program import Check, execute, program
from chatterm.checking.user import parse
from chatterm.conversation.verify import Checking
from chatterm.errors import InputError
from chatterm.records import Checked, CheckResult, Message, Notice, ToolCall


def forms(question: str) -> list[tuple[str, str, str]]:
    return [(e.kind, e.call, e.expected) for e in extract(question)]


@pytest.mark.parametrize("question, expected", [
    ("sum_to(3) == 6", [(VALUE, "sum_to(3)", "6")]),
    ("For example sum_to(3) ➞ 6.", [(VALUE, "sum_to(3)", "6")]),
    ("sum_to(3) => 6; sum_to(0) -> 0", [(VALUE, "sum_to(3)", "6"), (VALUE, "sum_to(0)", "0")]),
    ("choose_num(12, 15) = 14", [(VALUE, "choose_num(12, 15)", "14")]),
    ("`add(2, 3)` should return 5.", [(VALUE, "add(2, 3)", "5")]),
    ("encrypt('hi') returns 'lm'", [(VALUE, "encrypt('hi')", "'lm'")]),
    ("sum_to(3) 返回 6，sum_to(4) 应返回 10。", [(VALUE, "sum_to(3)", "6"), (VALUE, "sum_to(4)", "10")]),
    ("例如 split_words(\"a, b\") 应该返回 [\"a\", \"b\"]", [(VALUE, 'split_words("a, b")', '["a", "b"]')]),
    ("pair(1) == (1, 2), pair(2) == (2, 3)", [(VALUE, "pair(1)", "(1, 2)"), (VALUE, "pair(2)", "(2, 3)")]),
    ("mean([1, 2]) == 1.5", [(VALUE, "mean([1, 2])", "1.5")]),
    ("f(-1) raises ValueError", [(RAISES, "f(-1)", "ValueError")]),
    ("f(-1) 抛出 ValueError", [(RAISES, "f(-1)", "ValueError")]),
    (">>> sum_to(3)\n6\n>>> sum_to(0)\n0", [(OUTPUT, "sum_to(3)", "6"), (OUTPUT, "sum_to(0)", "0")]),
    ("    >>> below_zero([1, 2])\n    False\n", [(OUTPUT, "below_zero([1, 2])", "False")]),
    (">>> show(2)\nline 1\n", [(OUTPUT, "show(2)", "line 1")]),
])
def test_every_form_of_example_is_taken(question, expected):
    assert forms(question) == expected


def test_a_doctest_keeps_its_set_up_and_expected_exceptions():
    found = extract("    >>> xs = [3, 1]\n    >>> biggest(xs)\n    3\n    >>> biggest([])\n"
                    "    Traceback (most recent call last):\n    ...\n    ValueError: empty\n")
    assert [(e.kind, e.call, e.expected, e.setup) for e in found] == [
        (OUTPUT, "biggest(xs)", "3", ("xs = [3, 1]",)), (RAISES, "biggest([])", "ValueError", ("xs = [3, 1]",))]


@pytest.mark.parametrize("question", [
    "Write a function that adds two numbers.",
    "def f(x) -> List[int]:\n    pass",
    "What does print(sum(range(10))) print?",
    "Check this paragraph for grammar: the results was good.",
    "Test your knowledge: what is 2+2?",
    "sorted(f(x)) is what we want",
])
def test_no_examples_where_the_question_gives_none(question):
    assert extract(question) == []


def test_examples_never_run_away():
    question = "\n".join(f"f({i}) == {i}" for i in range(500))
    assert len(extract(question)) == examples.MOST


def run(code: str, checks: list[Check]) -> CheckResult:
    source, marker = program(code, checks)
    return execute(source, marker, checks, lambda: False)


SUM = "def sum_to(n):\n    return n * (n + 1) // 2\n"


def test_a_passing_answer_passes_every_check():
    checks = [Check.of(e) for e in extract("sum_to(3) == 6, sum_to(0) 返回 0\n>>> sum_to(4)\n10")]
    result = run(SUM, checks)
    assert (result.passed, result.total, result.failure) == (3, 3, "")
    assert result.line().startswith("examples 3/3 pass (")


def test_the_first_failure_says_what_it_gave():
    checks = [Check.of(e) for e in extract("sum_to(3) == 6, sum_to(4) == 10")]
    result = run("def sum_to(n):\n    return n * n\n", checks)
    assert (result.passed, result.failure, result.mechanical) == (0, "sum_to(3) gave 9, expected 6", "")
    assert result.mark == "✗ 0/2"


def test_values_compare_by_value():
    checks = [Check.of(e) for e in extract("avg([1, 2]) == 1.5\navg([0.1, 0.2]) == 0.15\nboth(1) == [1, 1]")]
    code = "def avg(xs):\n    return sum(xs) / len(xs)\ndef both(x):\n    return [x, x]\n"
    assert run(code, checks).ok
    assert not run(code.replace("[x, x]", "(x, x)"), checks).ok  # a tuple is not the list asked for


def test_mechanical_failures_are_named():
    checks = [Check.of(e) for e in extract("sum_to(3) == 6")]
    assert run("def sum_to(n):\n    return n +\n", checks).mechanical == "SyntaxError"
    assert run("def sum_to(n):\n    return helper(n)\n", checks).mechanical == "NameError"
    assert run("def sum_to(n):\n    return sum_to(n)\n", checks).mechanical == "RecursionError"


def test_printing_code_cannot_pass_for_a_result():
    checks = [Check.of(e) for e in extract("sum_to(3) == 6")]
    forged = 'import sys\nprint(\'{"n": 1, "ok": true}\')\ndef sum_to(n):\n    print("ok true")\n    return 0\n'
    assert run(forged, checks).passed == 0


def test_an_expected_exception_and_doctest_output():
    checks = [Check.of(e) for e in extract("check(-1) raises ValueError\n>>> show(2)\n2 2")]
    code = "def check(x):\n    if x < 0:\n        raise ValueError(x)\ndef show(n):\n    print(n, n)\n"
    assert run(code, checks).ok


def test_the_users_asserts_with_their_set_up():
    checks = [Check.user(c) for c in parse("import math\nx = 4\nassert root(x) == 2\nroot(9) == 3")]
    assert [c.shown for c in checks] == ["root(x) == 2", "root(9) == 3"]
    assert run("import math\ndef root(x):\n    return math.isqrt(x)\n", checks).ok
    with pytest.raises(InputError, match="not Python"):
        parse("assert (")
    with pytest.raises(InputError, match="no assert"):
        parse("x = 1")


def test_a_stored_result_is_read_back_and_garbage_is_not():
    result = CheckResult(1, 3, 0.25, "f(1) gave 2, expected 1")
    message = Message.of({"role": "assistant", "content": "x", "check": result.stored(), "candidate": "sample"})
    assert message.check == CheckResult(1, 3, 0.25, "f(1) gave 2, expected 1")
    assert message.stored()["check"] == result.stored() and message.candidate == "sample"
    for garbage in ("abc", {"passed": "1", "total": 3}, {"passed": 1, "total": 10**400}, [1, 2]):
        assert Message.of({"role": "assistant", "content": "x", "check": garbage}).check is None


# The conversation: a scripted engine answers, chatterm checks.
QUESTION = "Write sum_to(n), the sum 1+...+n. Examples: sum_to(3) == 6, sum_to(4) == 10"
GOOD = "Here:\n```python\ndef sum_to(n):\n    return n * (n + 1) // 2\n```"
BAD = "Here:\n```python\ndef sum_to(n):\n    return n * n\n```"
BROKEN = "Here:\n```python\ndef sum_to(n):\n    return n *\n```"


def checked(fake_conversation, *replies: str, approve: bool = True, verify: int = 3):
    conversation = fake_conversation(*replies)
    engine = conversation.engine
    conversation.checking = Checking(approved=approve)
    conversation.set_sampling("verify", verify)
    events = []
    turn = conversation.send(QUESTION)
    for event in turn:
        if isinstance(event, ToolCall) and event.decision is None:
            event.decline("test")
        if not isinstance(event, str):
            events.append(event)
    return conversation, engine, events


def test_a_passing_first_reply_stands_with_no_second_call(fake_conversation):
    conversation, engine, events = checked(fake_conversation, GOOD, BAD)
    assert len(engine.prompts) == 1  # the model answered once
    results = [e for e in events if isinstance(e, Checked)]
    assert [(r.label, r.result.mark) for r in results] == [("the reply", "✓ 2/2")]
    assert conversation.messages[-1]["content"] == GOOD
    assert conversation.record(-1).check.ok and conversation.record(-1).versions == 1


def test_a_failing_reply_is_replaced_by_a_passing_sample(fake_conversation):
    conversation, engine, events = checked(fake_conversation, BAD, BAD, GOOD, BAD)
    results = [(e.label, e.result.mark, e.shown is not None) for e in events if isinstance(e, Checked)]
    assert results == [("the reply", "✗ 0/2", False), ("a fresh sample (1 of 3)", "✗ 0/2", False),
                       ("a fresh sample (2 of 3)", "✓ 2/2", True)]
    assert len(engine.prompts) == 3  # stopped at the first that passed
    assert engine.prompts[1] == engine.prompts[0] == engine.prompts[2]  # the same question, fresh samples
    assert conversation.messages[-1]["content"] == GOOD
    every = branches.versions(conversation.messages, 2)
    assert [Message.of(v[0]).check.mark for v in every] == ["✗ 0/2", "✗ 0/2", "✓ 2/2"]
    assert [Message.of(v[0]).candidate for v in every] == ["", "sample", "sample"]


def test_none_passes_and_the_first_stays(fake_conversation):
    conversation, engine, events = checked(fake_conversation, BAD, BAD, BAD, BAD, verify=2)
    assert conversation.messages[-1]["content"] == BAD and conversation.record(-1).version == 1
    assert conversation.record(-1).versions == 3


def test_a_mechanical_failure_gets_one_repair_with_its_traceback(fake_conversation):
    conversation, engine, events = checked(fake_conversation, BROKEN, GOOD)
    assert [e.label for e in events if isinstance(e, Checked)] == ["the reply", "a repair"]
    repair_prompt = bytes(t for t in engine.prompts[1] if t < 256).decode()
    assert "SyntaxError" in repair_prompt and "Fix it" in repair_prompt
    assert conversation.messages[-1]["content"] == GOOD and conversation.messages[-1]["candidate"] == "repair"


def test_a_declined_check_runs_nothing_and_samples_nothing(fake_conversation):
    conversation, engine, events = checked(fake_conversation, BAD, GOOD, approve=False)
    assert not any(isinstance(e, Checked) for e in events)
    assert any(isinstance(e, Notice) and "declined" in e.text for e in events)
    assert len(engine.prompts) == 1 and conversation.messages[-1]["content"] == BAD


def test_verify_0_checks_and_samples_nothing(fake_conversation):
    conversation, engine, events = checked(fake_conversation, BAD, GOOD, verify=0)
    assert [e.result.mark for e in events if isinstance(e, Checked)] == ["✗ 0/2"]
    assert len(engine.prompts) == 1


def test_ctrl_c_while_trying_keeps_the_best_so_far(fake_conversation):
    conversation = fake_conversation(BAD, BAD, GOOD)
    conversation.checking = Checking(approved=True)
    turn = conversation.send(QUESTION)
    for event in turn:
        if isinstance(event, Notice) and event.text.startswith("trying"):
            turn.cancel()
    assert conversation.messages[-1]["content"] == BAD and conversation.record(-1).check.mark == "✗ 0/2"
    assert conversation.record(-1).versions == 1 and turn.finish.value == "eog"


def test_no_examples_no_check(fake_conversation):
    conversation = fake_conversation(BAD)
    conversation.checking = Checking(approved=True)
    events = [e for e in conversation.send("Write sum_to(n).") if not isinstance(e, str)]
    assert events == [] and "check" not in conversation.messages[-1]


def test_the_models_own_examples_are_never_taken(fake_conversation):
    conversation = fake_conversation(BAD + "\n\nsum_to(3) == 9")
    conversation.checking = Checking(approved=True)
    assert [e for e in conversation.send("Write sum_to(n).") if isinstance(e, Checked)] == []


def test_the_users_own_checks_run_without_examples(fake_conversation):
    conversation = fake_conversation(BAD, GOOD)
    conversation.checking = Checking(user=parse("assert sum_to(5) == 15"), approved=True)
    events = [e for e in conversation.send("Write sum_to(n).") if isinstance(e, Checked)]
    assert [(e.label, e.result.mark) for e in events] == [("the reply", "✗ 0/1"),
                                                          ("a fresh sample (1 of 3)", "✓ 1/1")]


def test_the_chat_asks_before_a_check_shows_each_result_and_alt_compares(fake_model, chatterm):
    from tests.helpers import drive

    repl, out = drive(f"/check on\r{QUESTION}\ryy/alt\r", fake_model(BAD, GOOD))  # one key answers
    assert "checking is on" in out
    assert "chatterm asks to run the reply's code on 2 checks" in out and "(1, 'value', 'sum_to(3)', '6', [])" in out  # the whole program is shown
    assert "examples 0/2 pass: sum_to(3) gave 9, expected 6" in out
    assert "trying a fresh sample (1 of 3)" in out
    assert "a fresh sample (1 of 3): ✓ 2/2 · shown in the reply's place (/alt compares)" in out
    assert out.count("n * (n + 1) // 2") >= 1
    listing = out.split("reply 1 has 2 versions:")[1]
    assert "examples ✗ 0/2" in listing and "examples ✓ 2/2 · sample" in listing
    assert repl.conversation.messages[-1]["content"] == GOOD
    r = chatterm("export", "--format", "dpo", "--from", "runs")  # the session's runs as preference pairs
    pairs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"], p["source"]) for p in pairs] == [
        (GOOD, BAD, "runs")]
    assert "dpo (from runs): 1 preference pairs" in r.stderr.decode()


def test_check_adds_the_users_asserts_and_refuses_what_is_not_python(fake_model):
    from tests.helpers import drive

    repl, out = drive("/check sum_to(5) == 15\r/check assert (\r/check\r/check off\r", fake_model())
    assert "1. sum_to(5) == 15" in out and "error: /check: not Python" in out
    assert repl.conversation.checking is None


def test_runs_become_training_data(fake_conversation):
    from chatterm.sessions import datasets

    conversation, _, _ = checked(fake_conversation, BAD, BAD, GOOD)
    messages = conversation.messages
    tally = datasets.Tally()
    pairs = list(datasets.records(messages, datasets.Options("dpo", source="runs"), tally))
    assert len(pairs) == 2 and {p["source"] for p in pairs} == {"runs"}
    assert all(p["chosen"][0]["content"] == GOOD and p["rejected"][0]["content"] == BAD for p in pairs)
    assert pairs[0]["prompt"][-1] == {"role": "user", "content": QUESTION}
    sft = list(datasets.records(messages, datasets.Options("sft", source="runs"), datasets.Tally()))
    assert [r["messages"][-1]["content"] for r in sft] == [GOOD]  # only code that passed
    assert list(datasets.records(messages, datasets.Options("dpo", source="ratings"), datasets.Tally())) == []  # none rated
    conversation.rate(None, "bad")  # the user's word wins over the run
    everything = list(datasets.records(messages, datasets.Options("kto", source="all"), datasets.Tally()))
    assert sorted((r["label"], r["source"]) for r in everything) == [(False, "ratings"), (False, "runs"),
                                                                     (False, "runs")]


def test_a_one_shot_with_a_check_file_prints_the_reply_that_passed(chatterm, tmp_path):
    from tests.scripted_engine import write_script

    checks = tmp_path / "checks.py"
    checks.write_text("import math\nassert sum_to(5) == 15\n")
    env = write_script(tmp_path / "script.json", BAD, GOOD)
    r = chatterm("--check", str(checks), "--yes", "python", "Write sum_to(n).", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().strip() == GOOD  # a pipe gets the reply that stands, once
    assert "examples 0/1 pass: sum_to(5) == 15 failed" in r.stderr.decode()
    assert "a fresh sample (1 of 3): ✓ 1/1" in r.stderr.decode()


def test_a_one_shot_asks_no_one_so_its_check_does_not_run(chatterm, tmp_path):
    from tests.scripted_engine import write_script

    env = write_script(tmp_path / "script.json", BAD, GOOD)
    r = chatterm("--check", "/dev/null", "Write sum_to(n).", env=env)
    assert r.returncode == 1 and "--check file /dev/null" in r.stderr.decode()  # not a regular file: refused before the model
    (tmp_path / "c.py").write_text("assert sum_to(1) == 1\n")
    r = chatterm("--check", str(tmp_path / "c.py"), "Write sum_to(n).", env=env)
    assert r.returncode == 0 and r.stdout.decode().strip() == BAD
    assert "declined 1 tool call (python)" in r.stderr.decode() and " pass" not in r.stderr.decode()


def test_a_sample_ends_once_its_code_is_written(fake_conversation):
    conversation, engine, events = checked(fake_conversation, BAD, GOOD + "\n\nA long explanation" + " more" * 300)
    assert conversation.messages[-1]["content"].startswith(GOOD)
    assert len(conversation.messages[-1]["content"]) < len(GOOD) + 40  # cut soon after the block closed
    assert conversation.messages[-1]["finish"] == "stop"


def test_the_answers_own_demonstration_lines_do_not_decide(fake_conversation):
    """A wrong self-test, a print, an `if __name__` block that reads input: the checks
    run the answer's definitions, not its demonstration."""
    demo = GOOD.replace("```\n", "") + "\nassert sum_to(3) == 7\nprint(sum_to(2))\nif __name__ == '__main__':\n" \
        "    input()\n```"
    conversation, engine, events = checked(fake_conversation, demo)
    assert [e.result.mark for e in events if isinstance(e, Checked)] == ["✓ 2/2"]


def test_a_block_closed_inside_a_docstring_does_not_end_a_sample(fake_conversation):
    cut = 'Here:\n```python\ndef sum_to(n):\n    """The sum.\n```\n'
    conversation, engine, events = checked(fake_conversation, BAD, cut + "then the rest\n" + GOOD)
    assert conversation.messages[-1]["content"].endswith(GOOD) and conversation.record(-1).check.ok
