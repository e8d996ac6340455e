"""LoRA adapters in llama.cpp's GGUF adapter format, checked against the base model
before any native code reads them (docs/guide/lora.md has the whole loop).

An adapter file is a GGUF whose `general.type` is "adapter", `adapter.type` is "lora"
and `general.architecture` the base model's; each adapted weight `W` of the base comes
as a pair `W.lora_a` (ne: [W's inputs, rank]) and `W.lora_b` (ne: [rank, W's outputs])
(the token embeddings' pair is stored the other way round). llama.cpp adds
`scale * alpha / rank * B·A` to `W·x`. A file that breaks any of these rules is refused
in one line: llama.cpp would refuse it too, but only in the engine worker, after the
model has loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chatterm import safe_files
from chatterm.errors import ModelFileError
from chatterm.models import gguf

SCALE_MAX = 100.0  # past this an adapter is noise; a typo (--lora a.gguf:10000) is refused


@dataclass
class Adapter:
    """An adapter of the loaded model: `scale` is what applies now (0: off)."""

    name: str  # the file's stem, how commands name it
    path: str
    sha256: str  # of the file: what sessions record for each reply
    scale: float
    loaded_scale: float  # the scale it was loaded with (`/lora on` restores it)

    @property
    def text(self) -> str:
        """"NAME×0.5", or "NAME (off)"."""
        return f"{self.name}×{self.scale:g}" if self.scale else f"{self.name} (off)"


def parse(text: str) -> tuple[str, float]:
    """`PATH[:SCALE]` (--lora) as (path, scale); a colon not followed by a number is part
    of the path."""
    path, colon, tail = text.rpartition(":")
    if colon and path:
        try:
            scale = float(tail)
        except ValueError:
            return text, 1.0
        return path, check_scale(scale, text)
    return text, 1.0


def check_scale(scale: float, what: str) -> float:
    if not -SCALE_MAX <= scale <= SCALE_MAX or scale != scale:
        raise ValueError(f"{what}: a scale is a number from {-SCALE_MAX:g} to {SCALE_MAX:g}")
    return scale


def check(path: Path, base: gguf.GGUFFile) -> None:
    """Refuse (ModelFileError, one line) a file that is not a LoRA adapter for `base`."""
    unreadable = safe_files.why_unreadable(path)
    if unreadable:
        raise ModelFileError(f"LoRA adapter {path}: {unreadable}")
    adapter = gguf.read(path)  # bounded and validated: a corrupt file is one line here
    md = adapter.metadata
    if md.get("general.type") != "adapter" or md.get("adapter.type") != "lora":
        kind = md.get("general.type") or "model"
        raise ModelFileError(f"{path}: not a LoRA adapter (a GGUF {kind} file; an adapter has "
                             "general.type 'adapter' and adapter.type 'lora')")
    if adapter.architecture != base.architecture:
        raise ModelFileError(f"{path}: an adapter for {adapter.architecture} models; "
                             f"{base.path.name} is {base.architecture}")
    shapes = {t.name: t.shape for t in base.tensors}
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for tensor in adapter.tensors:
        stem, dot, part = tensor.name.rpartition(".")
        if part not in ("lora_a", "lora_b") or not dot:
            raise ModelFileError(f"{path}: tensor {tensor.name!r} is not a LoRA pair's lora_a or lora_b")
        pairs.setdefault(stem, {})[part] = tensor.shape
    if not pairs:
        raise ModelFileError(f"{path}: a LoRA adapter with no tensors")
    for name, pair in pairs.items():
        problem = _pair_problem(name, pair, shapes.get(name))
        if problem:
            raise ModelFileError(f"{path}: {problem} (an adapter made for another base model?)")


def _pair_problem(name: str, pair: dict[str, tuple[int, ...]], base: tuple[int, ...] | None) -> str | None:
    if "lora_a" not in pair or "lora_b" not in pair:
        return f"{name} has only {next(iter(pair))}"
    if base is None:
        return f"{name} is not a tensor of the model"
    a, b = pair["lora_a"], pair["lora_b"]
    if len(a) != 2 or len(b) != 2 or len(base) != 2:
        return f"{name}: LoRA pairs are 2-D matrices"
    if name.endswith("token_embd.weight"):  # stored flipped (llama.cpp builds the input embedding so)
        fits = base[0] == b[1] and base[1] == a[1]
    else:
        fits = base[0] == a[0] and base[1] == b[1] and a[1] == b[0]
    return None if fits else f"{name}: lora_a {list(a)} and lora_b {list(b)} do not fit the model's {list(base)}"


def load(requested: list[tuple[str, float]], base: gguf.GGUFFile) -> list[Adapter]:
    """Each (path, scale) checked against `base` and named; two adapters with the same
    name are told apart by their file's folder."""
    out: list[Adapter] = []
    for text, scale in requested:
        path = Path(os.path.expanduser(text))
        check(path, base)
        name = path.stem
        if any(a.name == name for a in out):
            name = f"{path.parent.name}/{path.stem}"
        out.append(Adapter(name, str(path.resolve()), safe_files.sha256(path), scale, scale or 1.0))
    return out


def in_effect(adapters: list[Adapter]) -> list[dict[str, object]]:
    """The adapters that change the model now, as sessions record them with a reply."""
    return [{"name": a.name, "sha256": a.sha256, "scale": a.scale} for a in adapters if a.scale]
