"""llama-cpp-python's OpenAI-compatible server for the remote engine's tests, started
as `python -m tests.llama_server ARGS` (llama_cpp.server's own arguments).

On a CPU with AMX, llama.cpp crashes on the first decode of repacked weights
(docs/engines.md, "AMX"); chatterm's own engine loads without repacking there, but
`Llama(...)`, which the server uses, takes no such flag. So the default model
parameters it starts from get `use_extra_bufts = False` on those CPUs, as chatterm's do."""

from __future__ import annotations

import runpy

import llama_cpp.llama_cpp as native

from chatterm.models.hardware import repack_off_reason

if repack_off_reason() is not None:
    default_params = native.llama_model_default_params

    def without_repacking():  # type: ignore[no-untyped-def]
        params = default_params()
        params.use_extra_bufts = False
        return params

    native.llama_model_default_params = without_repacking

runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
