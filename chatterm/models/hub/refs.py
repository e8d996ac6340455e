"""Names of models on a Hugging Face hub: `OWNER/REPO[:FILE|:QUANT]`, split GGUF files
(`NAME-00001-of-00003.gguf`, pulled and removed whole) and quantization labels."""

from __future__ import annotations

import re
from dataclasses import dataclass

_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# llama.cpp's quantization names: Q4_K_M, IQ4_XS, Q8_0, Q4, F16...
_QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|MXFP4)(?=[-._]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class HubRef:
    repo: str
    selector: str | None = None  # a file name, a quantization such as q4_k_m, or None

    def __str__(self) -> str:
        return f"{self.repo}:{self.selector}" if self.selector else self.repo


def parse(text: str) -> HubRef | None:
    """`OWNER/REPO`, `OWNER/REPO:FILE` or `OWNER/REPO:QUANT`; None for anything else
    (a catalogue name, a path)."""
    repo, _, selector = text.partition(":")
    if not _REPO.fullmatch(repo) or text.startswith((".", "/", "~")):
        return None
    return HubRef(repo, selector or None)


def shards(first: str) -> list[str]:
    """Every file of a model stored as `first`: itself, or all parts of a split GGUF."""
    m = _SHARD.match(first)
    if not m:
        return [first]
    count = int(m["count"])
    return [f"{m['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def is_later_shard(name: str) -> bool:
    m = _SHARD.match(name)
    return m is not None and int(m["no"]) > 1


def quantization(name: str) -> str | None:
    """The quantization a file name states (Q4_K_M, IQ4_XS, Q8_0, F16...), upper case."""
    found = _QUANT.findall(name)
    return found[-1].upper() if found else None


def model_files(names: list[str]) -> list[str]:
    """The GGUF models among a repository's files, each named by its first (or only) file.
    Vision projectors (mmproj) are not chat models on their own."""
    return sorted(n for n in names if n.lower().endswith(".gguf") and not is_later_shard(n)
                  and "mmproj" not in n.lower())


def select(ref: HubRef, names: list[str]) -> list[str]:
    """The model files of `names` that `ref` picks: an exact file name, or every one whose
    quantization is `ref.selector`, or all of them when it names none."""
    models = model_files(names)
    if ref.selector is None:
        return models
    wanted = ref.selector.lower()
    exact = [n for n in names if n.lower() == wanted or n.lower() == wanted + ".gguf"]
    if exact:
        return exact[:1]
    return [n for n in models if (quantization(n) or "").lower() == wanted]
