"""llama.cpp through llama-cpp-python's ctypes bindings: every architecture current
llama.cpp supports.

chatterm drives llama.cpp's C API directly rather than the `Llama` class: `Llama`
copies the vocabulary's logits into numpy after every token (3-5% of decode time here),
imports numpy and jinja2 at start-up, and cannot load a model without weight repacking,
which CPUs with AMX need (`hardware.repack_off_reason`).

- `engine`: the engine (tokens, sampling, grammars, the cache and its state on disk);
- `speculative`: speculative decoding's loop, mixed into the engine;
- `draft`: the draft model;
- `native`: the C API set up (bindings, model, context, sampler chain, log).
"""

from chatterm.engines.llamacpp.engine import LlamaCppEngine
from chatterm.engines.llamacpp.native import bindings, file_digest, flash_attention

__all__ = ["LlamaCppEngine", "bindings", "file_digest", "flash_attention"]
