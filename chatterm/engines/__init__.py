"""Engine choice and loading. Engine modules are imported only here, on demand, so
`chatterm --help` never pays for llama_cpp or ctransformers (nor for the GGUF reader:
the command line imports this package for `ENGINE_NAMES`).

`start` runs an engine isolated in a worker process, as chatterm always does for a
chat: native code that crashes takes down the worker, never the conversation. `load`
runs one in this process: the worker itself, and tests and benchmarks of the engines.

The `auto` rule, in order:
1. A GGML (.bin) file: ctransformers, the only engine that still reads GGML.
2. A GGUF file: llama.cpp when installed and listed for the model. It reads every
   current architecture and quantisation with its own tokenizer and needs no
   converted copy on disk.
3. Otherwise ctransformers, when it can run the file (GGUF llama architecture).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from chatterm.errors import EngineError

if TYPE_CHECKING:
    from pathlib import Path

    from chatterm.engines.base import Engine, LoadOptions

ENGINE_NAMES = ("llama.cpp", "ctransformers")
_MODULES = {"llama.cpp": ("llama_cpp", "chatterm.engines.llamacpp", "LlamaCppEngine"),
            "ctransformers": ("ctransformers", "chatterm.engines.ctransformers.engine",
                              "CTransformersEngine")}

__all__ = ["ENGINE_NAMES", "choose", "installed", "load", "start"]


def installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_MODULES[name][0]) is not None


def choose(requested: str, path: Path, allowed: Sequence[str]) -> str:
    """The engine to use for `path`. Raises EngineError (one line) when none can."""
    from chatterm.models import gguf

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
    from chatterm.models import gguf

    names = ["ctransformers"] if gguf.sniff(path) == "ggml" else [e for e in ENGINE_NAMES if e in allowed]
    return [n for n in names if installed(n)]


def load(name: str, options: LoadOptions) -> Engine:
    """`name` loaded in this process; a GGUF file is validated before native code reads it."""
    import dataclasses
    import importlib

    from chatterm.models import gguf

    if options.parsed is None and gguf.sniff(options.path) == "gguf":
        options = dataclasses.replace(options, parsed=gguf.read(options.path))
    scripted = os.environ.get("CHATTERM_TEST_ENGINE")
    if scripted:  # the tests' scripted engine, played by the real worker (tests/scripted_engine.py)
        return _from_file(scripted)(options)
    _, module_name, class_name = _MODULES[name]
    module = importlib.import_module(module_name)
    engine: Engine = getattr(module, class_name)(options)
    return engine


def _from_file(path: str) -> type:
    import importlib.util

    spec = importlib.util.spec_from_file_location("chatterm_scripted_engine", path)
    if spec is None or spec.loader is None:
        raise EngineError(f"CHATTERM_TEST_ENGINE={path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ScriptedEngine


def start(name: str, options: LoadOptions, model: str, allowed: Sequence[str] = ENGINE_NAMES,
          restart: bool = True) -> Engine:
    """`name` loading in a worker process, now; see `chatterm.engines.isolated`."""
    from chatterm.engines.isolated import IsolatedEngine

    return IsolatedEngine(name, options, model, alternatives(options.path, allowed), restart=restart)
