"""Which engine runs a model file, and loading one in this process (the worker does;
tests and benchmarks of the engines too). The `auto` rule is in the package's docstring."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chatterm.errors import EngineError
from chatterm.models import gguf
from chatterm.models.engine_names import ENGINE_NAMES

if TYPE_CHECKING:
    from pathlib import Path

    from chatterm.engines.base import Engine, LoadOptions

_MODULES = {"llama.cpp": ("llama_cpp", "chatterm.engines.llamacpp", "LlamaCppEngine"),
            "ctransformers": ("ctransformers", "chatterm.engines.ctransformers.engine",
                              "CTransformersEngine")}

_REGISTERED: dict[str, Callable[[LoadOptions], Engine]] = {}

def register(name: str, make: Callable[[LoadOptions], Engine]) -> None:
    """`make(options)` loads engine `name` from now on, in place of the built-in one: how
    a test double (tests/engine_plugin) or a plugin stands in for llama.cpp or
    ctransformers in the process that loads engines (the worker)."""
    _REGISTERED[name] = make


def installed(name: str) -> bool:
    return name in _REGISTERED or importlib.util.find_spec(_MODULES[name][0]) is not None


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


def alternatives(path: Path, allowed: Sequence[str]) -> list[str]:
    """Engines that may run `path` if the chosen one keeps crashing on it."""
    names = ["ctransformers"] if gguf.sniff(path) == "ggml" else [e for e in ENGINE_NAMES if e in allowed]
    return [n for n in names if installed(n)]


def load(name: str, options: LoadOptions) -> Engine:
    """`name` loaded in this process; a GGUF file is validated before native code reads it."""
    if options.parsed is None and gguf.sniff(options.path) == "gguf":
        options = dataclasses.replace(options, parsed=gguf.read(options.path))
    if name in _REGISTERED:
        return _REGISTERED[name](options)
    _, module_name, class_name = _MODULES[name]
    module = importlib.import_module(module_name)
    engine: Engine = getattr(module, class_name)(options)
    return engine
