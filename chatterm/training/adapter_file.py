"""A PEFT LoRA adapter written in llama.cpp's adapter format, as llama.cpp's own
`convert_lora_to_gguf.py` writes it (docs/lora-format.md has the facts this relies on):

- metadata: `general.architecture` (the base model's), `general.type` "adapter",
  `adapter.type` "lora", `adapter.lora.alpha` (float32), `general.quantization_version`;
- per adapted weight W (llama.cpp's name, from the `gguf` package's name map for the
  architecture): `W.lora_a` (PEFT's lora_A, rank x in) and `W.lora_b` (lora_B, out x
  rank), float32 as the script's default writes them;
- llama-architecture models store attention queries and keys with their rows permuted
  for llama.cpp's rotary embedding; Hugging Face's layout (what transformers gives when
  it loads the GGUF) is undone on B, whose rows are the weight's rows.

The file is written whole or not at all (a temporary file renamed over the target)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from chatterm import safe_files
from chatterm.models import adapters
from chatterm.models.gguf import GGUFFile

# Architectures whose converter permutes q/k rows (convert_hf_to_gguf's LlamaModel).
PERMUTED = frozenset({"llama"})


def name_of(peft_name: str) -> tuple[str, str] | None:
    """(Hugging Face weight name, "a" or "b") of a PEFT state-dict name, or None."""
    for part in ("a", "b"):
        marker = f".lora_{part.upper()}.weight"
        if peft_name.endswith(marker):
            return peft_name.removeprefix("base_model.model.")[:-len(marker)] + ".weight", part
    return None


def permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's q/k rows in llama.cpp's order (each head's two rotary halves interleaved)."""
    shape = rows.shape
    return rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def tensors(state: dict[str, np.ndarray], arch: str, n_layers: int, n_head: int,
            n_head_kv: int) -> list[tuple[str, np.ndarray]]:
    """The adapter's GGUF tensors, by llama.cpp's names, from PEFT's state dict."""
    names = gguf.get_tensor_name_map(_arch(arch), n_layers)
    out = []
    for peft_name, value in state.items():
        found = name_of(peft_name)
        if found is None:
            raise ValueError(f"{peft_name} is not a LoRA pair's tensor")
        hf_name, part = found
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"llama.cpp has no tensor for {hf_name}")
        value = np.ascontiguousarray(value, dtype=np.float32)
        if part == "b" and arch in PERMUTED:
            if hf_name.endswith("q_proj.weight"):
                value = permute(value, n_head)
            elif hf_name.endswith("k_proj.weight"):
                value = permute(value, n_head_kv)
        out.append((f"{gguf_name}.lora_{part}", value))
    return out


def write(target: Path, state: dict[str, np.ndarray], *, arch: str, n_layers: int, n_head: int,
          n_head_kv: int, alpha: float, name: str) -> None:
    """The adapter file at `target`, atomically."""
    pairs = tensors(state, arch, n_layers, n_head, n_head_kv)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder) / "adapter.gguf"
        writer = gguf.GGUFWriter(scratch, arch)
        writer.add_name(name)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for tensor_name, value in pairs:
            writer.add_tensor(tensor_name, value)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        safe_files.write_atomic(target, scratch.read_bytes())


def save(target: Path, state: dict[str, np.ndarray], base: GGUFFile, *, alpha: float, name: str) -> None:
    """The adapter of `state` (PEFT's names) for the model `base`, written to `target`
    and checked as `--lora` checks a file (ModelFileError if it would be refused)."""
    heads = int(base.arch_value("attention.head_count", 0))
    write(target, state, arch=base.architecture, n_layers=base.block_count, n_head=heads,
          n_head_kv=int(base.arch_value("attention.head_count_kv", heads)), alpha=alpha, name=name)
    adapters.check(target, base, target)


def _arch(name: str) -> Any:
    for arch, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == name:
            return arch
    raise ValueError(f"the gguf package knows no architecture {name!r}")
