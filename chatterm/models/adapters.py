"""LoRA adapters in llama.cpp's GGUF adapter format, checked against the base model
before any native code reads them (docs/guide/lora.md has the whole loop).

An adapter file is a GGUF whose `general.type` is "adapter", `adapter.type` is "lora"
and `general.architecture` the base model's; each adapted weight `W` of the base comes
as a pair `W.lora_a` (ne: [W's inputs, rank]) and `W.lora_b` (ne: [rank, W's outputs])
(the token embeddings' pair is stored the other way round). llama.cpp adds
`scale * alpha / rank * B·A` to `W·x`. A file that breaks any of these rules is refused
in one line: llama.cpp would refuse it too, but only in the engine worker, after the
model has loaded; some it would not refuse but abort or crash on (docs/guide/lora.md,
"What a valid adapter is"): metadata of another type than llama.cpp reads (alpha must
be a float32), tensors of a type its matrix products do not take (integers), and
weights or an alpha that are not finite numbers (a reply of "GGGG").

The file checked is the file loaded: it is copied once, hashed as it is copied, into
chatterm's own cache (`stage`), and the copy is what is checked, recorded and loaded,
so a file swapped or rewritten after the check changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chatterm import paths, safe_files
from chatterm.errors import ModelFileError
from chatterm.models import gguf
from chatterm.settings import parse_number

SCALE_MAX = 100.0  # past this an adapter is noise; a typo (--lora a.gguf:10000) is refused


@dataclass
class Adapter:
    """An adapter of the loaded model: `scale` is what applies now (0: off)."""

    name: str  # the file's stem, how commands name it
    path: str  # the file the user named
    sha256: str  # of the file: what sessions record for each reply
    loaded: str  # the checked copy the engine loads (`stage`)
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
            scale = parse_number(tail)
        except ValueError:
            return text, 1.0
        return path, check_scale(scale, text)
    return text, 1.0


def check_scale(scale: float, what: str) -> float:
    if not -SCALE_MAX <= scale <= SCALE_MAX or scale != scale:
        raise ValueError(f"{what}: a scale is a number from {-SCALE_MAX:g} to {SCALE_MAX:g}")
    return scale


# What llama.cpp's adapter loader reads from the metadata, with the type it asserts.
_METADATA = {"general.type": gguf.STRING, "adapter.type": gguf.STRING,
             "general.architecture": gguf.STRING, "adapter.lora.alpha": gguf.F32}
# Tensor types a LoRA pair may have: what llama.cpp's matrix products take with a
# float32 input, and what its conversion script writes (f32, f16, bf16, q8_0).
F32, F16, Q8_0, BF16 = 0, 1, 8, 30
PAIR_TYPES = {F32: "F32", F16: "F16", BF16: "BF16", Q8_0: "Q8_0"}
STAGED_DAYS = 30  # copies not used for this long are removed


def check(path: Path, base: gguf.GGUFFile, what: Path) -> None:
    """Refuse (ModelFileError, one line) a file that is not a LoRA adapter for `base`,
    or one llama.cpp would abort, crash or produce noise on. `path`: the staged copy
    (`stage`, a regular file chatterm just wrote); `what`: the file the user named."""
    try:
        adapter = gguf.read(path)  # bounded and validated: a corrupt file is one line here
    except ModelFileError as e:
        raise ModelFileError(f"LoRA adapter {str(e).replace(str(path), str(what), 1)}") from None
    md = adapter.metadata
    for key, kind in _METADATA.items():
        if key in md and adapter.types[key][0] != kind:
            raise ModelFileError(f"LoRA adapter {what}: {key} must be a {_TYPE_NAMES[kind]}, "
                                 f"not a {_TYPE_NAMES.get(adapter.types[key][0], 'value of another type')}")
    if md.get("general.type") != "adapter" or md.get("adapter.type") != "lora":
        raise ModelFileError(_not_an_adapter(what, md))
    alpha = md.get("adapter.lora.alpha", 0.0)
    if alpha != alpha or alpha in (float("inf"), float("-inf")):
        raise ModelFileError(f"LoRA adapter {what}: adapter.lora.alpha is {alpha}, not a finite number")
    if adapter.architecture != base.architecture:
        raise ModelFileError(f"{what}: an adapter for {adapter.architecture} models; "
                             f"{base.path.name} is {base.architecture}")
    shapes = {t.name: t.shape for t in base.tensors}
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for tensor in adapter.tensors:
        stem, dot, part = tensor.name.rpartition(".")
        if part not in ("lora_a", "lora_b") or not dot:
            raise ModelFileError(f"{what}: tensor {tensor.name!r} is not a LoRA pair's lora_a or lora_b")
        if tensor.type not in PAIR_TYPES:
            raise ModelFileError(f"LoRA adapter {what}: tensor {tensor.name!r} is of type "
                                 f"{gguf.TENSOR_TYPES[tensor.type][0]}; a LoRA pair is "
                                 f"{', '.join(PAIR_TYPES.values())}")
        pairs.setdefault(stem, {})[part] = tensor.shape
    if not pairs:
        raise ModelFileError(f"{what}: a LoRA adapter with no tensors")
    for name, pair in pairs.items():
        problem = _pair_problem(name, pair, shapes.get(name))
        if problem:
            raise ModelFileError(f"{what}: {problem} (an adapter made for another base model?)")
    bad = _not_finite(adapter)
    if bad:
        raise ModelFileError(f"LoRA adapter {what}: tensor {bad!r} holds values that are not finite numbers "
                             "(NaN or infinity)")


_TYPE_NAMES = {gguf.STRING: "string", gguf.F32: "float32", gguf.U32: "u32", gguf.I32: "i32",
               gguf.ARRAY: "array", gguf.F64: "float64", gguf.U64: "u64", gguf.I64: "i64",
               gguf.BOOL: "bool", gguf.U8: "u8", gguf.I8: "i8", gguf.U16: "u16", gguf.I16: "i16"}


def _not_finite(adapter: gguf.GGUFFile) -> str | None:
    """The first tensor holding a NaN or an infinity (None: all finite). One pass
    over the data, mapped from the file."""
    import numpy as np

    data = np.memmap(adapter.path, np.uint8, "r")
    try:
        for t in adapter.tensors:
            raw = data[adapter.data_offset + t.offset:adapter.data_offset + t.offset + t.nbytes]
            if t.type == F32:
                values = raw.view(np.float32)
            elif t.type == F16:
                values = raw.view(np.float16)
            elif t.type == BF16:  # all exponent bits set: NaN or infinity
                if ((raw.view(np.uint16) & 0x7F80) == 0x7F80).any():
                    return t.name
                continue
            else:  # Q8_0: blocks of a float16 scale and 32 int8 values
                values = raw.reshape(-1, 34)[:, :2].copy().view(np.float16)
            if not np.isfinite(values).all():
                return t.name
    finally:
        del data
    return None


def stage(path: Path) -> tuple[Path, str]:
    """(a private copy of the regular file `path` in chatterm's cache, its SHA-256):
    copied and hashed in one read, so what is checked and loaded is what was hashed."""
    folder = paths.cache_dir() / "adapters"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, _ = safe_files.open_regular(path, "LoRA adapter")
    digest = hashlib.sha256()
    out, tmp = tempfile.mkstemp(dir=folder, prefix=".staging-", suffix=".gguf")
    try:
        with os.fdopen(fd, "rb") as source, os.fdopen(out, "wb") as copy:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                copy.write(chunk)
        target = folder / f"{digest.hexdigest()}.gguf"
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _prune(folder, keep=target)
    return target, digest.hexdigest()


def _is_adapter(path: Path) -> None:
    unreadable = safe_files.why_unreadable(path)
    if unreadable:
        raise ModelFileError(f"LoRA adapter {path}: {unreadable}")
    md = gguf.read(path).metadata
    if md.get("general.type") != "adapter" or md.get("adapter.type") != "lora":
        raise ModelFileError(_not_an_adapter(path, md))


def _not_an_adapter(path: Path, md: dict) -> str:
    kind = md.get("general.type") if isinstance(md.get("general.type"), str) else "model"
    return (f"{path}: not a LoRA adapter (a GGUF {kind} file; an adapter has "
            "general.type 'adapter' and adapter.type 'lora')")


def _prune(folder: Path, keep: Path) -> None:
    """Copies not staged for `STAGED_DAYS` days (the rest are adapters in use)."""
    cutoff = time.time() - STAGED_DAYS * 86400
    for old in folder.glob("*.gguf"):
        try:
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass


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
    """Each (path, scale) copied, checked against `base` and named; a file given twice
    is refused; two files with the same name are told apart by their folder."""
    out: list[Adapter] = []
    for text, scale in requested:
        path = Path(os.path.expanduser(text))
        _is_adapter(path)  # before a copy is made: a model file given by mistake is not copied
        try:
            copy, digest = stage(path)
        except FileNotFoundError:
            raise ModelFileError(f"LoRA adapter {path}: no such file") from None
        except OSError as e:
            raise ModelFileError(f"LoRA adapter {path}: {e.strerror or e}") from None
        check(copy, base, path)
        same = next((a for a in out if a.sha256 == digest), None)
        if same is not None:
            raise ModelFileError(f"LoRA adapter {path} is given twice (also as {same.path}): give it once, "
                                 "with the scale it should have")
        name = path.stem
        if any(a.name == name for a in out):
            name = f"{path.parent.name}/{path.stem}"
        if any(a.name == name for a in out):
            raise ModelFileError(f"two LoRA adapters named {name!r}: rename one of the files")
        out.append(Adapter(name, str(path.resolve()), digest, str(copy), scale, scale or 1.0))
    return out


def in_effect(adapters: list[Adapter]) -> list[dict[str, object]]:
    """The adapters that change the model now, as sessions record them with a reply."""
    return [{"name": a.name, "sha256": a.sha256, "scale": a.scale} for a in adapters if a.scale]
