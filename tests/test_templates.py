from __future__ import annotations

import pytest

from chatterm.conversation.templates import PRESETS, ChatTemplate, resolve
from chatterm.errors import TemplateError

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "你好"}]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_renders_every_message(name):
    text = resolve(name, None, bos="<s>", eos="</s>").render(MESSAGES)
    for m in MESSAGES:
        assert m["content"] in text


def test_chatml_exact():
    text = resolve("chatml", None, bos="", eos="").render(MESSAGES[1:2])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_model_file_template_matches_llama_cpp_rendering(default_gguf):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    source = default_gguf.chat_template
    ours = resolve("gguf", source, bos="<|im_start|>", eos="<|im_end|>").render(MESSAGES)
    theirs = Jinja2ChatFormatter(source, eos_token="<|im_end|>", bos_token="<|im_start|>")(messages=MESSAGES).prompt
    assert ours == theirs


@pytest.mark.parametrize("attack", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% set x = messages.append({'role': 'user'}) %}{{ x }}",
    "{{ self.__init__.__globals__ }}",
])
def test_template_cannot_escape_the_sandbox(attack):
    with pytest.raises(TemplateError, match="sandbox|failed"):
        ChatTemplate(attack, name="evil").render(MESSAGES)


def test_raise_exception_in_template_is_a_clear_error():
    t = ChatTemplate("{{ raise_exception('roles must alternate') }}", name="strict")
    with pytest.raises(TemplateError, match="roles must alternate"):
        t.render(MESSAGES)


def test_gguf_choice_without_file_template_falls_back_to_chatml():
    assert resolve("gguf", None, bos="", eos="").name == "chatml"
    with pytest.raises(TemplateError, match="unknown chat template"):
        resolve("nope", None, bos="", eos="")
