"""Chat templates: the model file's own Jinja template or a named preset, rendered in
Jinja's immutable sandbox.

Templates from model files are untrusted code (CVE-2024-34359 was remote code execution
through exactly this path in llama-cpp-python), so nothing is rendered outside
`ImmutableSandboxedEnvironment`; a template that reaches for Python internals raises
TemplateError instead of running.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from chatterm.errors import TemplateError

PRESETS: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "llama2": (
        "{% if messages and messages[0].role == 'system' %}"
        "{% set sys = '<<SYS>>\n' + messages[0].content + '\n<</SYS>>\n\n' %}"
        "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
        "{% for m in msgs %}{% if m.role == 'user' %}{{ bos_token }}[INST] "
        "{{ (sys if loop.first else '') + m.content }} [/INST]"
        "{% else %} {{ m.content }} {{ eos_token }}{% endif %}{% endfor %}"),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
        "{{ m.content }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    "mistral": (
        "{% if messages and messages[0].role == 'system' %}{% set sys = messages[0].content + '\n\n' %}"
        "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
        "{{ bos_token }}{% for m in msgs %}{% if m.role == 'user' %}"
        "[INST] {{ (sys if loop.first else '') + m.content }} [/INST]"
        "{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}"),
    "vicuna": (
        "{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}\n\n"
        "{% set msgs = messages[1:] %}{% else %}A chat between a curious user and an artificial "
        "intelligence assistant. The assistant gives helpful, detailed, and polite answers to the "
        "user's questions.\n\n{% set msgs = messages %}{% endif %}"
        "{% for m in msgs %}{% if m.role == 'user' %}USER: {{ m.content }}\n"
        "{% else %}ASSISTANT: {{ m.content }}{{ eos_token }}\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"),
    "alpaca": (
        "{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}\n\n"
        "{% set msgs = messages[1:] %}{% else %}Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n{% set msgs = messages %}{% endif %}"
        "{% for m in msgs %}{% if m.role == 'user' %}### Instruction:\n{{ m.content }}\n\n"
        "{% else %}### Response:\n{{ m.content }}\n\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}### Response:\n{% endif %}"),
    "zephyr": (
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
    "gemma": (
        "{{ bos_token }}{% if messages and messages[0].role == 'system' %}"
        "{% set sys = messages[0].content + '\n\n' %}{% set msgs = messages[1:] %}"
        "{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
        "{% for m in msgs %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
        "{{ (sys if loop.first else '') + m.content }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
    "phi3": (
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
}

# Stop strings each preset needs, beyond the model's end-of-generation tokens.
PRESET_STOPS: dict[str, list[str]] = {
    "chatml": ["<|im_end|>", "<|im_start|>"], "llama2": ["[INST]"], "llama3": ["<|eot_id|>"],
    "mistral": ["[INST]"], "vicuna": ["\nUSER:"], "alpaca": ["### Instruction:"],
    "zephyr": ["<|user|>", "</s>"], "gemma": ["<end_of_turn>"], "phi3": ["<|end|>", "<|user|>"],
}


CHOICES = ("gguf", *PRESETS)  # gguf: the model file's own template


def _raise(message: str) -> None:
    raise TemplateError(f"chat template raised: {message}")


@lru_cache(maxsize=8)
def _compile(source: str) -> Any:
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(source)
    except TemplateSyntaxError as e:
        raise TemplateError(f"chat template does not parse: {e.message} (line {e.lineno})") from None


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    import json
    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    """Renders a list of {role, content} messages into the prompt text."""

    def __init__(self, source: str, *, name: str, bos_token: str = "", eos_token: str = ""):
        self.name = name
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._template = _compile(source)

    @property
    def think_switch(self) -> bool:
        """The template can turn a reasoning model's thinking off (Qwen3's switch)."""
        return "enable_thinking" in self.source

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True,
               think: bool | None = None) -> str:
        from jinja2.exceptions import SecurityError, TemplateError as JinjaError

        switch = {} if think is None else {"enable_thinking": think}
        try:
            return self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token, **switch)
        except SecurityError as e:
            raise TemplateError(f"chat template {self.name!r} tried to leave the sandbox ({e}); "
                                "choose a preset with --template") from None
        except TemplateError:
            raise
        except (JinjaError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise TemplateError(f"chat template {self.name!r} failed: {e}") from None


def check(choice: str) -> str:
    """`choice` if it names a template ('gguf' or a preset), else TemplateError."""
    if choice not in CHOICES:
        raise TemplateError(f"unknown chat template {choice!r}; choose {', '.join(CHOICES)}")
    return choice


def resolve(choice: str, file_template: str | None, *, bos: str, eos: str) -> ChatTemplate:
    """`choice` is 'gguf' (the file's own template, chatml if it has none) or a preset."""
    if check(choice) == "gguf":
        if file_template:
            return ChatTemplate(file_template, name="model file", bos_token=bos, eos_token=eos)
        choice = "chatml"
    return ChatTemplate(PRESETS[choice], name=choice, bos_token=bos, eos_token=eos)
