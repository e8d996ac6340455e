"""How much memory training a model takes, from its GGUF file alone, before anything
loads: the weights dequantized to float32 (held twice for a moment while transformers
converts them), and per token of the longest record the activations backpropagation
keeps (each block's inputs and intermediate products, and the logits over the
vocabulary). The factors are measured (`python -m chatterm.bench --only train`
prints the peak beside the estimate; docs/performance.md)."""

from __future__ import annotations

import math

from chatterm.models.gguf import GGUFFile

BASE = 600 << 20  # Python, torch and transformers before any weight
LOAD_FACTOR = 1.5  # the peak while the GGUF is dequantized, per byte of float32 weights
BLOCK_FLOATS = (16, 6)  # per token and block: floats kept per hidden unit, per feed-forward unit
LOGIT_FLOATS = 4  # per token: floats per vocabulary entry (logits, softmax, gradient)


def parameters(model: GGUFFile) -> int:
    return sum(math.prod(tensor.shape) for tensor in model.tensors)


def estimate(model: GGUFFile, tokens: int) -> int:
    """Bytes of memory at the peak of loading or training with records of up to `tokens`."""
    weights = 4 * parameters(model)
    hidden = int(model.arch_value("embedding_length", 0) or 0)
    ffn = int(model.arch_value("feed_forward_length", 0) or 0)
    vocab = len(model.metadata.get("tokenizer.ggml.tokens", ()) or ())
    per_token = 4 * (model.block_count * (BLOCK_FLOATS[0] * hidden + BLOCK_FLOATS[1] * ffn) + LOGIT_FLOATS * vocab)
    return BASE + max(int(LOAD_FACTOR * weights), weights + tokens * per_token)
