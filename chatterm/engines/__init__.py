"""Engine choice and loading. Engine modules are imported only here, on demand, so
`chatterm --help` never pays for llama_cpp or ctransformers.

The `auto` rule, in order:
1. A GGML (.bin) file: ctransformers, the only engine that still reads GGML.
2. A GGUF file: llama.cpp when installed and listed for the model. It reads every
   current architecture and quantisation with its own tokenizer and needs no
   converted copy on disk.
3. Otherwise ctransformers, when it can run the file (GGUF llama architecture).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from chatterm import gguf
from chatterm.engines.base import Engine, LoadOptions, Sampling
from chatterm.errors import EngineError

ENGINE_NAMES = ("llama.cpp", "ctransformers")
_MODULES = {"llama.cpp": ("llama_cpp", "chatterm.engines.llamacpp_engine", "LlamaCppEngine"),
            "ctransformers": ("ctransformers", "chatterm.engines.ctransformers_engine",
                              "CTransformersEngine")}

__all__ = ["Engine", "LoadOptions", "Sampling", "choose", "load", "ENGINE_NAMES"]


def installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name][0]) is not None


def choose(requested: str, path: Path, allowed: Sequence[str]) -> str:
    """The engine to use for `path`. Raises EngineError (one line) when none can."""
    kind = gguf.sniff(path)
    if requested != "auto":
        if requested not in ENGINE_NAMES:
            raise EngineError(f"unknown engine {requested!r}; choose {', '.join(ENGINE_NAMES)} or auto")
        if kind == "ggml" and requested == "llama.cpp":
            raise EngineError(f"{path}: GGML files are read by ctransformers only; use --engine ctransformers")
        if not installed(requested):
            raise EngineError(f"engine {requested} is not installed")
        return requested
    if kind == "ggml":
        candidates = ["ctransformers"]
    else:
        candidates = [e for e in ENGINE_NAMES if e in allowed] or list(ENGINE_NAMES)
    for name in candidates:
        if installed(name):
            return name
    raise EngineError(f"no installed engine can run {path} (tried {', '.join(candidates)})")


def load(name: str, options: LoadOptions) -> Engine:
    import importlib

    _, module_name, class_name = _MODULES[name]
    module = importlib.import_module(module_name)
    engine: Engine = getattr(module, class_name)(options)
    return engine
