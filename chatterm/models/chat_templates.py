"""The chat templates chatterm knows by name (a catalogue entry's `template`): Jinja
sources and the stop strings each needs. Rendering them is `conversation.templates`'."""

from __future__ import annotations

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
