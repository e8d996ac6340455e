"""Will a model fit this machine, and how much of it fits the GPU? Estimated from the
GGUF file before anything is loaded, the way ollama does (docs/engines.md, "Memory estimate"): the bytes of
each layer's tensors, the KV cache the context needs, and a working-memory margin.

llama.cpp offloads the *last* N repeating layers (`n_gpu_layers`); the output layer
goes to the GPU only when every repeating layer is there too, and the token embeddings
stay in RAM. The estimate follows that, so `--gpu-layers auto` can offload as many
layers as fit the free VRAM instead of all or nothing."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from chatterm.errors import ChattermError
from chatterm.models.gguf import GGUFFile, read, sniff
from chatterm.units import size_text

KV_BYTES = 2  # f16 K and V caches, llama.cpp's default
UBATCH = 512  # llama.cpp's micro-batch: the attention scores of one are the compute buffer's bulk
RAM_MARGIN = 150_000_000  # the tokenizer, output buffers, the process itself
VRAM_MARGIN = 600_000_000  # the CUDA context and cuBLAS workspace
SKIP_ENV = "CHATTERM_SKIP_FIT"  # load anyway: for machines with swap, or a wrong estimate

_LAYER = re.compile(r"^blk\.(\d+)\.")


class FitError(ChattermError):
    """The model needs more memory than this machine has available."""


@dataclass(frozen=True)
class Footprint:
    layers: tuple[int, ...]  # weight bytes of each repeating layer, in order
    output: int  # the output head (and its norm): on the GPU only with every layer
    resident: int  # always in RAM: token embeddings and anything unassigned
    kv_per_layer: tuple[int, ...]  # KV cache bytes of each layer at n_ctx
    n_ctx: int
    compute: int = 0  # the compute buffer: f32 attention scores of a micro-batch over n_ctx

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def weights(self) -> int:
        return sum(self.layers) + self.output + self.resident

    def on_gpu(self, gpu_layers: int) -> int:
        """VRAM bytes for `gpu_layers` offloaded layers (-1 or more than the layers: all)."""
        k = self._clamp(gpu_layers)
        if k == 0:
            return 0
        tail = range(self.n_layers - min(k, self.n_layers), self.n_layers)
        used = sum(self.layers[i] + self.kv_per_layer[i] for i in tail)
        return used + (self.output if k > self.n_layers else 0) + self.compute + VRAM_MARGIN

    def in_ram(self, gpu_layers: int = 0) -> int:
        """RAM bytes with `gpu_layers` offloaded: what stays on the CPU, plus the margin."""
        k = self._clamp(gpu_layers)
        head = range(0, self.n_layers - min(k, self.n_layers))
        used = sum(self.layers[i] + self.kv_per_layer[i] for i in head)
        compute = 0 if k else self.compute  # with layers offloaded, it lives on the GPU
        return used + self.resident + (0 if k > self.n_layers else self.output) + compute + RAM_MARGIN

    def layers_fitting(self, free_vram: int) -> int:
        """The most layers that fit `free_vram`: -1 when all (output head included) do."""
        if self.on_gpu(-1) <= free_vram:
            return -1
        k = 0
        while k < self.n_layers and self.on_gpu(k + 1) <= free_vram:
            k += 1
        return k

    def breakdown(self) -> str:
        return (f"weights {size_text(self.weights)}, KV cache {size_text(sum(self.kv_per_layer))}, "
                f"working memory {size_text(self.compute + RAM_MARGIN)}")

    def _clamp(self, gpu_layers: int) -> int:
        return self.n_layers + 1 if gpu_layers < 0 or gpu_layers > self.n_layers else gpu_layers


DEFAULT_CTX_CAP = 4096  # for models without a context_length entry: memory stays modest


def context_size(requested: int | None, trained: int | None) -> int:
    """The context window to allocate: the request (--ctx, else the catalogue entry's),
    else the model's trained size capped at DEFAULT_CTX_CAP; never above what the
    model was trained for."""
    n_ctx = requested or min(trained or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
    return min(n_ctx, trained) if trained else n_ctx


def _per_layer(value: object, n_layers: int) -> list[int]:
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value][:n_layers] + [0] * max(0, n_layers - len(value))
    return [int(value) if isinstance(value, (int, float, str)) and value else 0] * n_layers


def footprint(parts: list[GGUFFile], n_ctx: int) -> Footprint:
    """The memory a model (all parts of a split file) needs at context `n_ctx`."""
    first = parts[0]
    n_layers = first.block_count
    layers = [0] * n_layers
    output = resident = 0
    for part in parts:
        for t in part.tensors:
            m = _LAYER.match(t.name)
            if m and int(m[1]) < n_layers:
                layers[int(m[1])] += t.nbytes
            elif t.name.startswith(("output.", "output_norm.")):
                output += t.nbytes
            else:
                resident += t.nbytes
    heads = _per_layer(first.arch_value("attention.head_count"), n_layers)
    kv_heads = _per_layer(first.arch_value("attention.head_count_kv", first.arch_value("attention.head_count")),
                          n_layers)
    embd = int(first.arch_value("embedding_length", 0) or 0)
    kv = []
    for i in range(n_layers):
        head_dim = embd // heads[i] if heads[i] else 0
        k_len = int(first.arch_value("attention.key_length", head_dim) or 0)
        v_len = int(first.arch_value("attention.value_length", head_dim) or 0)
        kv.append(n_ctx * kv_heads[i] * (k_len + v_len) * KV_BYTES)
    compute = n_ctx * UBATCH * max(heads, default=0) * 4
    return Footprint(tuple(layers), output, resident, tuple(kv), n_ctx, compute)


def file_footprint(size: int, n_ctx: int) -> Footprint:
    """For a GGML file, whose layout chatterm does not read: its bytes, all resident."""
    return Footprint((), 0, size, (), n_ctx)


ESTIMATE_EXTRA = 0.15  # KV cache and compute buffers of a few-thousand-token context, roughly


def size_estimate(size: int, n_ctx: int) -> Footprint:
    """Before a download, from its size alone: the weights and a share for the context."""
    return Footprint((), 0, size + int(size * ESTIMATE_EXTRA), (), n_ctx)


def check_ram(fp: Footprint, gpu_layers: int, available: int | None, name: str) -> None:
    """Refuse, with the numbers, a model that cannot fit the RAM available now."""
    if available is None or os.environ.get(SKIP_ENV):
        return
    need = fp.in_ram(gpu_layers)
    if need <= available:
        return
    raise FitError(f"{name} needs about {size_text(need)} of RAM at context {fp.n_ctx} "
                   f"({fp.breakdown()}); {size_text(available)} is available. Try a smaller model "
                   f"(chatterm models), a smaller --ctx, or {SKIP_ENV}=1 to load it anyway")


def of_file(path: Path, n_ctx: int | None) -> Footprint:
    """The footprint of the model at `path` (every part, if split) at the context chatterm
    would use for the request `n_ctx`; a missing part or a corrupt file is a ModelFileError."""
    if sniff(path) != "gguf":
        return file_footprint(path.stat().st_size, context_size(n_ctx, None))
    parts = [read(p) for p in split_parts(path)]
    return footprint(parts, context_size(n_ctx, parts[0].context_length))


def split_parts(path: Path) -> list[Path]:
    """The files of a model: `path`, or every part of a split GGUF beside it."""
    from chatterm.models.hub.refs import shards

    names = shards(path.name)
    return [path.with_name(n) for n in names] if len(names) > 1 else [path]
