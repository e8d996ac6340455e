from __future__ import annotations

import os

from chatterm.engines.ctransformers import compat
from chatterm.models import gguf


def test_copy_is_cached_and_fixes_what_ctransformers_needs(tiny_llama):
    model = gguf.read(tiny_llama)
    assert compat.needs_copy(model)
    path = compat.compat_path(model)
    assert path != tiny_llama and path.exists()
    copy = gguf.read(path)
    assert copy.version == 2
    assert copy.metadata["tokenizer.ggml.model"] == "llama"
    assert len(copy.metadata["tokenizer.ggml.scores"]) == len(copy.metadata["tokenizer.ggml.tokens"])
    assert "<0x0A>" in copy.metadata["tokenizer.ggml.tokens"]
    assert copy.tensor("output.weight").nbytes == copy.tensor("token_embd.weight").nbytes
    mtime = path.stat().st_mtime_ns
    assert compat.compat_path(gguf.read(tiny_llama)) == path  # cached: not rewritten
    assert path.stat().st_mtime_ns == mtime


def test_changed_source_gets_a_new_copy(tmp_path, tiny_llama, default_gguf):
    from tests.modelgen import tiny_model

    source = tiny_model(tmp_path / "m.gguf", default_gguf, seed=1)
    first = compat.compat_path(gguf.read(source))
    tiny_model(source, default_gguf, seed=2)
    os.utime(source, ns=(1, 2))
    second = compat.compat_path(gguf.read(source))
    assert second != first and second.exists()
    assert not first.exists()  # the stale copy is removed
