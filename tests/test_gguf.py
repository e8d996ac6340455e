from __future__ import annotations

import os

import pytest

from chatterm.errors import ModelFileError
from chatterm.models import gguf


def test_reads_default_model(default_gguf):
    assert default_gguf.version == 3
    assert default_gguf.architecture == "llama"
    assert default_gguf.context_length == 8192
    assert default_gguf.block_count == 30
    assert len(default_gguf.metadata["tokenizer.ggml.tokens"]) == 49152
    assert default_gguf.metadata["tokenizer.ggml.tokens"][2] == "<|im_end|>"
    assert "<|im_start|>" in default_gguf.chat_template
    assert default_gguf.tensor("output.weight") is None  # tied embeddings


@pytest.mark.parametrize("cut", [10, 1000, 200_000, 50_000_000])
def test_truncated_file_is_refused(tmp_path, default_model_path, cut):
    path = tmp_path / "cut.gguf"
    with open(default_model_path, "rb") as f:
        path.write_bytes(f.read(cut))
    with pytest.raises(ModelFileError, match="truncated|not a model file"):
        gguf.read(path)


def test_garbage_and_empty_and_missing(tmp_path):
    (tmp_path / "garbage.gguf").write_bytes(os.urandom(4096))
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "fake.gguf").write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(ModelFileError, match="not a GGUF"):
        gguf.sniff(tmp_path / "garbage.gguf")
    with pytest.raises(ModelFileError, match="empty"):
        gguf.read(tmp_path / "empty.gguf")
    with pytest.raises(ModelFileError, match="corrupt"):
        gguf.read(tmp_path / "fake.gguf")
    with pytest.raises(ModelFileError, match="not found"):
        gguf.read(tmp_path / "missing.gguf")
    with pytest.raises(ModelFileError, match="directory"):
        gguf.read(tmp_path)


def test_absurd_counts_are_refused(tmp_path):
    import struct
    (tmp_path / "huge.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1) + b"\0" * 64)
    with pytest.raises(ModelFileError, match="impossible"):
        gguf.read(tmp_path / "huge.gguf")


def test_write_then_read_round_trip(tmp_path, tiny_llama):
    model = gguf.read(tiny_llama)
    assert model.architecture == "llama" and model.block_count == 2
    assert model.tensor("blk.1.ffn_down.weight").shape == (128, 64)
    copy = tmp_path / "copy.gguf"
    with open(copy, "wb") as out, open(tiny_llama, "rb") as src:
        gguf.write(out, 2, model.metadata, model.types,
                   [gguf.NewTensor(t.name, t.shape, t.type, t.nbytes, model.data_offset + t.offset)
                    for t in model.tensors], src)
    again = gguf.read(copy)
    assert again.version == 2
    assert list(again.metadata["tokenizer.ggml.merges"]) == list(model.metadata["tokenizer.ggml.merges"])
    with open(copy, "rb") as a, open(tiny_llama, "rb") as b:
        for t, u in zip(again.tensors, model.tensors):
            a.seek(again.data_offset + t.offset)
            b.seek(model.data_offset + u.offset)
            assert a.read(t.nbytes) == b.read(u.nbytes)
