"""`chatterm train`: a LoRA adapter trained on the user's own records (sessions' ratings
and checks, or an exported JSONL file) over the base weights of the model's GGUF file,
written in llama.cpp's adapter format. Needs the optional `train` extra (torch,
transformers, peft, gguf); nothing here is imported by a chat."""

from __future__ import annotations

import importlib.util

EXTRA = ("torch", "transformers", "peft", "gguf")


def missing() -> list[str]:
    """The training extra's packages that are not installed (nothing is imported)."""
    return [name for name in EXTRA if importlib.util.find_spec(name) is None]
