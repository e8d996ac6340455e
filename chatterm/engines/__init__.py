"""Engine choice and loading. Engine modules are imported only here, on demand, so
`chatterm --help` never pays for llama_cpp or ctransformers (the command line takes
`ENGINE_NAMES` from `models.engine_names` and imports this package only to run a model).

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

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chatterm.engines.loading import alternatives, choose, installed, load, register
from chatterm.models.engine_names import ENGINE_NAMES

if TYPE_CHECKING:
    from chatterm.engines.base import Engine, LoadOptions

__all__ = ["ENGINE_NAMES", "alternatives", "choose", "installed", "load", "register", "start"]


def start(name: str, options: LoadOptions, model: str, allowed: Sequence[str] = ENGINE_NAMES,
          restart: bool = True) -> Engine:
    """`name` loading in a worker process, now; see `chatterm.engines.isolated`."""
    from chatterm.engines.isolated import IsolatedEngine

    return IsolatedEngine(name, options, model, alternatives(options.path, allowed), restart=restart)
