"""Reasoning models: the thinking told apart from the answer (markers in the text, the
template's open block, `reasoning_content` from servers), shown collapsed, kept apart
in sessions and out of the history and exports, switched on and off."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from chatterm.conversation.local import LocalBackend
from chatterm.conversation.templates import ChatTemplate
from chatterm.conversation.thinking import Splitter, Thought
from chatterm.loader import RunOptions
from chatterm.sessions import datasets
from chatterm.ui.render import StreamRenderer
from tests.fakes import FakeEngine
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import converse, run

# Qwen3's switch and DeepSeek-R1's open block, reduced to what matters here.
QWEN3 = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n"
         "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
R1 = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")


def split(chunks: list[str], inside: bool = False) -> list[tuple[bool, str]]:
    splitter = Splitter(inside)
    pieces = [p for c in chunks for p in splitter.feed(c)] + list(splitter.finish())
    merged: list[tuple[bool, str]] = []
    for p in pieces:
        kind = isinstance(p, Thought)
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + p)
        else:
            merged.append((kind, p))
    return merged


def reasoning(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"reasoning_content": text}, "index": 0}]}).encode() + b"\n\n"


@pytest.mark.parametrize("chunks, inside, expected", [
    (["<think>", "\nplan", "\n</think>", "\n\nAnswer."], False, [(True, "\nplan\n"), (False, "Answer.")]),
    (["<thi", "nk>a</th", "ink>B"], False, [(True, "a"), (False, "B")]),  # markers cut anywhere
    (["\n<think>x</think>y"], False, [(True, "x"), (False, "y")]),
    (["reason", "ing</think>\n\nAnswer"], True, [(True, "reasoning"), (False, "Answer")]),  # opened by the prompt
    (["Use <think> tags"], False, [(False, "Use <think> tags")]),  # not at the start: the answer's own text
    (["A", "<think>x</think>"], False, [(False, "A<think>x</think>")]),
    (["<think>cut sho"], False, [(True, "cut sho")]),  # the stream ended while thinking
    (["<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>final<|message|>Hi"], False,
     [(True, "hmm"), (False, "Hi")]),
    (["\n\n  Hello"], False, [(False, "\n\n  Hello")]),  # no thinking: the text is untouched
])
def test_thinking_is_told_apart_from_the_answer(chunks, inside, expected):
    assert split(chunks, inside) == expected


def test_reasoning_chunks_from_a_server_pass_as_thinking():
    assert split([Thought("plan"), "Answer"]) == [(True, "plan"), (False, "Answer")]


def test_a_reply_keeps_thinking_apart_and_out_of_the_next_prompt(fake_conversation):
    conversation = fake_conversation("<think>\nLet me count.\n</think>\n\nFour.", "ok", system=None)
    chunks = list(conversation.send("2+2?"))
    assert "".join(c for c in chunks if not isinstance(c, Thought)) == "Four."
    assert conversation.messages[-1] == {"role": "assistant", "content": "Four.", "finish": "eog",
                                         "thinking": "\nLet me count.\n"}
    "".join(conversation.send("thanks"))
    prompt = bytes(conversation.engine.prompts[-1]).decode()
    assert "Four." in prompt and "Let me count" not in prompt


def backend(template: str, *replies: str) -> LocalBackend:
    engine = FakeEngine()
    engine.queue(*replies)
    return LocalBackend(engine, ChatTemplate(template, name="test"))


def test_think_on_and_off_through_the_template_switch():
    local = backend(QWEN3)
    assert local.think_switch
    messages = [{"role": "user", "content": "hi"}]
    assert local.measure(messages, None, False)[1][0].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert local.measure(messages, None, None)[1][0].endswith("<|im_start|>assistant\n")
    assert not backend(R1).think_switch


def test_a_template_that_opens_the_block_starts_the_reply_thinking(fake_model):
    loaded = fake_model("first I add</think>\n\nFour.")
    loaded.backend._template = ChatTemplate(R1, name="r1")
    conversation = converse_loaded(loaded)
    assert "".join(c for c in conversation.send("2+2?") if not isinstance(c, Thought)) == "Four."
    assert conversation.messages[-1]["thinking"] == "first I add"


def converse_loaded(loaded):
    from chatterm.loader import conversation
    return conversation(loaded, RunOptions())


def test_the_renderer_collapses_thinking_to_one_line():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=30, color_system=None)
    renderer = StreamRenderer(console)
    for chunk in [Thought("step one\n"), Thought("step two, secret plan"), "The answer", " is 4."]:
        renderer.feed(chunk)
    renderer.finish()
    screen = out.getvalue()
    final = screen[screen.rindex("▸"):]  # what stays once the live region is gone
    assert final.startswith("▸ thought for ") and "(2 tokens) · /think show" in final
    assert "The answer is 4." in final and "secret plan" not in final


def test_plain_output_is_the_answer_alone():
    out = io.StringIO()
    renderer = StreamRenderer(file=out)
    for chunk in [Thought("hidden"), "shown"]:
        renderer.feed(chunk)
    renderer.finish()
    assert out.getvalue() == "shown\n"


def test_server_reasoning_content_is_thinking_and_no_think_is_sent():
    with FakeServer([reasoning("Let me"), reasoning(" think."), event("Hello"), DONE]) as fake:
        chat = converse(RunOptions(base_url=fake.url, sampling={"think": False}))
        chunks = list(chat.send("Hi"))
        assert [c for c in chunks if isinstance(c, Thought)] == ["Let me", " think."]
        assert chat.messages[-1] == {"role": "assistant", "content": "Hello", "finish": "eog",
                                     "thinking": "Let me think."}
        sent = [r["json"] for r in fake.requests if r["path"].endswith("chat/completions")][-1]
        assert sent["chat_template_kwargs"] == {"enable_thinking": False}
        r = run("--base-url", fake.url, "Hi")  # one-shot to a pipe: the answer only
        assert r.returncode == 0 and r.stdout.decode() == "Hello\n"


def test_the_repl_shows_thinking_live_then_one_line_and_think_show(spawn):
    chunks = [reasoning(f"step {i} ") for i in range(30)] + [event("The answer is 42."), DONE]
    with FakeServer(chunks, delay_s=0.05) as fake:
        child = spawn("--base-url", fake.url, "--no-think")
        child.sendline("question")
        child.expect(r"thinking… \d+ tokens, \d+ s")  # the live line while it thinks
        child.expect("▸ thought for")
        child.expect("The answer is 42.")
        child.expect("›")
        child.sendline("/think show")
        child.expect("step 29")
        child.sendline("/set think on")
        child.expect("think = on")  # as typed, never Python's True
        child.quit()


def test_sessions_keep_thinking_and_exports_leave_it_out_unless_asked(fake_conversation):
    conversation = fake_conversation("<think>plan</think>Answer.", system=None)
    "".join(conversation.send("q"))
    conversation.rate(None, "good")
    tally = datasets.Tally()
    plain = list(datasets.records(conversation.messages, datasets.Options("kto"), tally))
    assert plain[0]["completion"] == [{"role": "assistant", "content": "Answer."}]
    full = list(datasets.records(conversation.messages, datasets.Options("kto", thinking=True), tally))
    assert full[0]["completion"] == [{"role": "assistant", "content": "<think>\nplan\n</think>\n\nAnswer."}]


def test_a_server_without_a_reasoning_parser_sends_the_tags_in_the_content():
    with FakeServer([event("<think>"), event("\nplan it"), event("</think>"), event("\n\nThe answer."), DONE]) as fake:
        chat = converse(RunOptions(base_url=fake.url))
        "".join(chat.send("hi"))
        assert chat.messages[-1] == {"role": "assistant", "content": "The answer.", "finish": "eog",
                                     "thinking": "\nplan it"}
        assert run("--base-url", fake.url, "hi").stdout.decode() == "The answer.\n"
