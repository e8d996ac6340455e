"""Tiny GGUF models made by the tests: random weights, the default model's vocabulary.

They load in the real engines in a fraction of a second, so engine behaviour that does
not depend on answer quality (architectures, tied embeddings, compat copies, limits) is
tested on files whose every property the test chose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chatterm.models import gguf

F32 = 0
_NUMPY_TYPES = {F32: np.float32, 1: np.float16, 24: np.int8, 26: np.int32}  # ggml type -> numpy


def _tensor(name: str, shape: tuple[int, ...], rng: np.random.Generator, scale: float = 0.05,
            fill: float | None = None) -> gguf.NewTensor:
    # GGUF lists dimensions innermost first; numpy wants them the other way round.
    count = int(np.prod(shape))
    values = np.full(count, fill, np.float32) if fill is not None else (rng.standard_normal(count) * scale).astype(np.float32)
    data = values.tobytes()
    return gguf.NewTensor(name, shape, F32, len(data), data=data)


def tiny_model(path: Path, vocab_from: gguf.GGUFFile, *, architecture: str = "llama",
               n_embd: int = 64, n_layer: int = 2, n_head: int = 4, n_head_kv: int = 2,
               n_ff: int = 128, n_ctx: int = 512, tied: bool = True, seed: int = 0,
               version: int = 3, metadata: dict | None = None) -> Path:
    """A tiny random model with `vocab_from`'s tokenizer; `metadata` (strings) added
    over what it would have (a hostile name or chat template)."""
    rng = np.random.default_rng(seed)
    src = vocab_from.metadata
    n_vocab = len(src["tokenizer.ggml.tokens"])
    a = architecture
    md = {
        "general.architecture": a, "general.name": f"tiny-{a}",
        f"{a}.context_length": n_ctx, f"{a}.embedding_length": n_embd,
        f"{a}.feed_forward_length": n_ff, f"{a}.block_count": n_layer,
        f"{a}.attention.head_count": n_head, f"{a}.attention.head_count_kv": n_head_kv,
        f"{a}.rope.dimension_count": n_embd // n_head, f"{a}.rope.freq_base": 10000.0,
        f"{a}.attention.layer_norm_rms_epsilon": 1e-5, "general.file_type": 0,
    }
    types = {k: gguf.infer_type(v) for k, v in md.items()}
    types[f"{a}.context_length"] = (gguf.U32, None)
    for key, value in src.items():
        if key.startswith("tokenizer."):
            md[key] = list(value) if isinstance(value, gguf.LazyStrings) else value
            types[key] = vocab_from.types[key]
    head_dim = n_embd // n_head
    tensors = [_tensor("token_embd.weight", (n_embd, n_vocab), rng),
               _tensor("output_norm.weight", (n_embd,), rng, fill=1.0)]
    if not tied:
        tensors.append(_tensor("output.weight", (n_embd, n_vocab), rng))
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors += [
            _tensor(b + "attn_norm.weight", (n_embd,), rng, fill=1.0),
            _tensor(b + "attn_q.weight", (n_embd, n_embd), rng),
            _tensor(b + "attn_k.weight", (n_embd, head_dim * n_head_kv), rng),
            _tensor(b + "attn_v.weight", (n_embd, head_dim * n_head_kv), rng),
            _tensor(b + "attn_output.weight", (n_embd, n_embd), rng),
            _tensor(b + "ffn_norm.weight", (n_embd,), rng, fill=1.0),
            _tensor(b + "ffn_gate.weight", (n_embd, n_ff), rng),
            _tensor(b + "ffn_up.weight", (n_embd, n_ff), rng),
            _tensor(b + "ffn_down.weight", (n_ff, n_embd), rng),
        ]
        if a == "qwen2":  # qwen2 has biases on q, k and v
            tensors += [_tensor(b + "attn_q.bias", (n_embd,), rng),
                        _tensor(b + "attn_k.bias", (head_dim * n_head_kv,), rng),
                        _tensor(b + "attn_v.bias", (head_dim * n_head_kv,), rng)]
    for key, value in (metadata or {}).items():
        md[key], types[key] = value, gguf.infer_type(value)
    with open(path, "wb") as out:
        gguf.write(out, version, md, types, tensors)
    return path


def tiny_lora(path: Path, base: gguf.GGUFFile, pairs: dict[str, tuple[np.ndarray, np.ndarray]], *,
              alpha: float | None = None, architecture: str | None = None,
              metadata: dict | None = None, tensor_type: int = F32) -> Path:
    """A LoRA adapter in llama.cpp's GGUF format: for each weight named in `pairs`,
    (A, B) as numpy matrices of shapes (rank, inputs) and (outputs, rank), so that the
    weight gains alpha / rank * B @ A (alpha: the rank unless given, a scale of 1).
    `tensor_type`: the pairs' ggml type (F32, or an integer type llama.cpp cannot use)."""
    rank = next(iter(pairs.values()))[0].shape[0]
    md: dict = {"general.type": "adapter", "general.architecture": architecture or base.architecture,
                "general.name": "tiny-lora", "adapter.type": "lora",
                "adapter.lora.alpha": float(alpha if alpha is not None else rank)}
    md.update(metadata or {})
    types = {k: gguf.infer_type(v) for k, v in md.items()}
    tensors = []
    for name, (a, b) in pairs.items():
        for part, matrix in (("lora_a", a), ("lora_b", b)):
            data = np.ascontiguousarray(matrix, _NUMPY_TYPES[tensor_type]).tobytes()
            # numpy (rows, columns) is GGUF's (columns, rows): innermost first
            tensors.append(gguf.NewTensor(f"{name}.{part}", tuple(reversed(matrix.shape)), tensor_type, len(data),
                                          data=data))
    with open(path, "wb") as out:
        gguf.write(out, 3, md, types, tensors)
    return path
