"""A ctransformers-readable copy of a modern GGUF llama-architecture file.

ctransformers 0.2.27 bundles a llama.cpp from Sept 2023 that reads GGUF v1/v2 only,
requires `tokenizer.ggml.scores` and an `output.weight` tensor, and aborts on a
byte-level BPE vocabulary (docs/engines.md). The copy fixes each of those
and nothing else: weights are copied byte for byte. chatterm does the tokenizing for
such files itself (`bpe_tokenizer.py`), so the relabelled vocabulary only has to load.

The copy is made once and cached under a key of the source's identity (path, size,
mtime, first MiB), so an edited or replaced source gets a fresh copy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from chatterm import paths
from chatterm.errors import EngineError, ModelFileError
from chatterm.models import gguf

COMPAT_FORMAT = 1  # bump when the rewrite changes, to invalidate old copies
CTRANSFORMERS_ARCHITECTURES = {"llama"}
MAX_TENSOR_TYPE = 15  # ggml types after Q8_K came after ctransformers' llama.cpp


def needs_copy(model: gguf.GGUFFile) -> bool:
    md = model.metadata
    return (model.version > 2 or "tokenizer.ggml.scores" not in md
            or md.get("tokenizer.ggml.model") != "llama" or model.tensor("output.weight") is None)


def check_supported(model: gguf.GGUFFile) -> None:
    if model.architecture not in CTRANSFORMERS_ARCHITECTURES:
        raise EngineError(f"{model.path}: architecture {model.architecture!r} is not supported "
                          "by ctransformers for GGUF files; use --engine llama.cpp")
    for t in model.tensors:
        if t.type > MAX_TENSOR_TYPE:
            name = gguf.TENSOR_TYPES[t.type][0]
            raise EngineError(f"{model.path}: quantisation {name} is newer than ctransformers; "
                              "use --engine llama.cpp")
    vocab = model.metadata.get("tokenizer.ggml.model")
    if vocab not in ("llama", "gpt2"):
        raise EngineError(f"{model.path}: tokenizer {vocab!r} is not supported by "
                          "ctransformers; use --engine llama.cpp")


def cache_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{COMPAT_FORMAT}\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return h.hexdigest()[:20]


def compat_path(model: gguf.GGUFFile) -> Path:
    """Path of the ctransformers-readable copy of `model`, made now if not cached."""
    check_supported(model)
    if not needs_copy(model):
        return model.path
    folder = paths.cache_dir() / "compat"
    target = folder / f"{model.path.stem}-{cache_key(model.path)}.gguf"
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_copy(model, target)
    except OSError as e:
        raise EngineError(f"cannot write the ctransformers copy of {model.path.name} to "
                          f"{folder}: {e.strerror or e}") from None
    for stale in folder.glob(f"{model.path.stem}-*.gguf"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def rewritten_metadata(model: gguf.GGUFFile) -> dict:
    md = dict(model.metadata)
    tokens = list(md["tokenizer.ggml.tokens"])
    md["tokenizer.ggml.model"] = "llama"
    md.setdefault("tokenizer.ggml.scores", [0.0] * len(tokens))
    if "<0x0A>" not in tokens:
        # The SPM loader looks the line feed up as '<0x0A>' and aborts without it;
        # lend it the id of a special token chatterm never feeds or shows.
        tokens[_spare_token(model, tokens)] = "<0x0A>"
    md["tokenizer.ggml.tokens"] = tokens
    return md


def _spare_token(model: gguf.GGUFFile, tokens: list[str]) -> int:
    md = model.metadata
    if "<empty_output>" in tokens:
        return tokens.index("<empty_output>")
    reserved = {md.get(f"tokenizer.ggml.{k}_token_id") for k in
                ("bos", "eos", "eot", "padding", "unknown", "eom")}
    template = model.chat_template or ""
    types = md.get("tokenizer.ggml.token_type") or []
    for i in range(len(tokens) - 1, -1, -1):
        if i < len(types) and types[i] in (3, 4) and i not in reserved and tokens[i] not in template:
            return i
    raise ModelFileError(f"{model.path}: no spare special token to carry '<0x0A>' for ctransformers")


def _write_copy(model: gguf.GGUFFile, target: Path) -> None:
    md = rewritten_metadata(model)
    types = dict(model.types)
    types["tokenizer.ggml.model"] = (gguf.STRING, None)
    tensors = [gguf.NewTensor(t.name, t.shape, t.type, t.nbytes, model.data_offset + t.offset)
               for t in model.tensors]
    if model.tensor("output.weight") is None:
        embd = model.tensor("token_embd.weight")
        if embd is None:
            raise ModelFileError(f"{model.path}: has neither output.weight nor token_embd.weight")
        tensors.append(gguf.NewTensor("output.weight", embd.shape, embd.type, embd.nbytes,
                                      model.data_offset + embd.offset))
    alignment = int(md.get("general.alignment", gguf.DEFAULT_ALIGNMENT))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".gguf")
    try:
        with os.fdopen(fd, "wb") as out, open(model.path, "rb") as src:
            gguf.write(out, 2, md, types, tensors, src, alignment)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
