"""What `chatterm models` and `chatterm show` print: the catalogue and the models on
disk, and whether each fits this machine; one model's facts from its file."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from chatterm.engines.base import context_size
from chatterm.errors import ModelFileError
from chatterm.models import fit, gguf, hardware
from chatterm.models.catalog import Catalog, ModelSpec
from chatterm.models.hub import refs, store
from chatterm.units import count, size_text

CHINESE = "zh"


@dataclass
class Row:
    name: str
    installed: str  # "yes", "no", "partly" (a download was stopped), "built in", "server"
    size: int | None
    quant: str
    params: str
    engines: str
    context: str
    languages: list[str]
    fits: str


def _machine() -> tuple[int | None, int | None]:
    ram = hardware.available_ram()
    vram = hardware.free_vram() if hardware.cuda_device_count() > 0 else None
    return ram, vram


def verdict(footprint: fit.Footprint, ram: int | None, vram: int | None, exact: bool) -> str:
    """Fits this machine? With the RAM it needs and, with a GPU, the layers that fit it."""
    about = "" if exact else "≈"
    layers = footprint.layers_fitting(vram) if vram is not None else 0
    need = footprint.in_ram(layers)
    gpu = ""
    if vram is not None and footprint.n_layers:
        gpu = (", all on the GPU" if layers < 0 else f", {layers}/{footprint.n_layers} layers on the GPU"
               if layers else ", GPU too small")
    if ram is not None and need > ram:
        return f"no: needs {about}{size_text(need)}"  # what is free: under the table
    return f"yes: {about}{size_text(need)}{gpu}"


def _catalogue_row(spec: ModelSpec, ram: int | None, vram: int | None) -> Row:
    path: Path | None = None
    if spec.remote:
        installed = "server"
    elif spec.source == "package":
        installed, path = "built in", spec.model_path()
    elif spec.source == "path":
        path = spec.model_path()
        installed = "yes" if path.is_file() else "missing"
    else:
        local = spec.downloaded()
        path = local.paths[0] if local else None
        installed = "yes" if local else "partly" if store.partial(spec.location, str(spec.file)) else "no"
    size = spec.size
    fits = "-"
    if path is not None and path.is_file():
        try:
            footprint = fit.of_file(path, spec.context_length)
            fits, size = verdict(footprint, ram, vram, exact=True), _size_on_disk(path)
        except Exception as e:  # a broken file shows as such; the list goes on
            fits = f"unreadable: {str(e)[:60]}"
    elif spec.size:
        ctx = context_size(spec.context_length, None)
        fits = verdict(fit.size_estimate(spec.size, ctx), ram, vram, exact=False)
    return Row(spec.name, installed, size, spec.quant or refs.quantization(str(spec.file or "")) or "",
               spec.params or "", ",".join(spec.engines), str(spec.context_length or ""),
               spec.languages, fits)


def _size_on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in fit.split_parts(path) if p.is_file())


def rows(catalog: Catalog) -> list[Row]:
    ram, vram = _machine()
    result = [_catalogue_row(spec, ram, vram) for spec in catalog.models.values()]
    for model in store.installed():  # pulled with OWNER/REPO[:QUANT], outside the catalogue
        if catalog.by_file(model.repo, model.file) is None:
            try:
                fits = verdict(fit.of_file(model.paths[0], None), ram, vram, exact=True)
            except Exception as e:
                fits = f"unreadable: {str(e)[:60]}"
            result.append(Row(model.ref, "yes", model.size, refs.quantization(model.file) or "", "",
                              "llama.cpp", "", [], fits))
    return result


def _engines(engines: str) -> str:
    names = set(engines.split(","))
    return "both" if names == {"llama.cpp", "ctransformers"} else ",".join(
        "ct" if n == "ctransformers" else n for n in engines.split(","))


def _context(context: str) -> str:
    n = int(context) if context.isdigit() else 0
    return f"{n // 1024}k" if n and n % 1024 == 0 else context


def table(found: list[Row]) -> str:
    """Aligned columns, the same on a terminal and in a pipe (easy to grep and read),
    within 100 columns for the catalogue's names."""
    head = ("NAME", "ON DISK", "SIZE", "QUANT", "PARAMS", "CTX", "LANG", "ENGINES", "FITS HERE")
    lines = [head] + [(r.name, r.installed, size_text(r.size) if r.size else "", r.quant, r.params,
                       _context(r.context), " ".join("中文" if lang == CHINESE else lang for lang in r.languages),
                       _engines(r.engines), r.fits) for r in found]
    widths = [max(_width(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(line, widths)).rstrip()
           for line in lines]
    ram, vram = _machine()
    out.append("")
    out.append(f"This machine: {size_text(ram)} RAM available"
               + (f", {size_text(vram)} free VRAM" if vram is not None else ", no CUDA GPU")
               + f"; {size_text(store.free_space()[1])} free for models")
    out.append(f"Models are kept in {store.root()}.")
    out.append("中文: chats in Chinese. ct: ctransformers; both: it and llama.cpp. Get one: chatterm pull NAME")
    out.append("FITS HERE: the RAM it needs with its context; ≈: estimated from the download size.")
    return "\n".join(out)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def show(spec: ModelSpec) -> str:
    """One model's facts, read from its file (and its catalogue entry, when it has one);
    for an entry not downloaded yet, what the entry says and how to get it."""
    if spec.downloadable and spec.downloaded() is None:
        return _entry_facts(spec)
    path = spec.model_path()
    facts: list[tuple[str, str]] = [("name", spec.name)]
    if spec.description:
        facts.append(("description", spec.description))
    size = _size_on_disk(path)
    facts += [("file", str(path)), ("size", f"{size_text(size)} ({size:,} bytes)")]
    parts = fit.split_parts(path)
    if len(parts) > 1:
        facts.append(("parts", count(len(parts), "file")))
    if gguf.sniff(path) == "gguf":
        model = gguf.read(path)
        meta = model.metadata
        facts += [("architecture", model.architecture),
                  ("parameters", str(meta.get("general.size_label") or spec.params or "?")),
                  ("quantization", spec.quant or refs.quantization(path.name) or _file_type(meta)),
                  ("layers", str(model.block_count)),
                  ("context", f"{model.context_length or '?'} trained; chatterm uses "
                              f"{context_size(spec.context_length, model.context_length)}")]
        facts.append(("chat template", _template_text(spec, model)))
        facts.append(("stop tokens", ", ".join(_stops(spec, model)) or "-"))
        ram, vram = _machine()
        footprint = fit.of_file(path, spec.context_length)
        facts.append(("memory", f"{verdict(footprint, ram, vram, exact=True)} ({footprint.breakdown()})"))
    else:
        facts += [("format", "GGML (ctransformers)"), ("model type", spec.model_type or "?")]
    facts.append(("engines", ", ".join(spec.engines)))
    if spec.languages:
        facts.append(("languages", ", ".join(spec.languages)))
    return _aligned(facts)


def _aligned(facts: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in facts)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in facts)


def _entry_facts(spec: ModelSpec) -> str:
    """A catalogue model not downloaded: its entry's facts, the memory estimated from
    its download size, and the command that gets it."""
    facts: list[tuple[str, str]] = [("name", spec.name)]
    if spec.description:
        facts.append(("description", spec.description))
    facts.append(("from", f"{spec.location} · {spec.file}"))
    if spec.size:
        facts.append(("size", f"{size_text(spec.size)} ({spec.size:,} bytes) to download"))
    facts += [(key, value) for key, value in (("parameters", spec.params),
                                              ("quantization", spec.quant or refs.quantization(str(spec.file or "")))
                                              ) if value]
    if spec.context_length:
        facts.append(("context", f"{spec.context_length:,} (the entry's)"))
    facts.append(("chat template", "from the file" if spec.template == "gguf" else f"{spec.template} (preset)"))
    if spec.size:
        ram, vram = _machine()
        estimate = fit.size_estimate(spec.size, context_size(spec.context_length, None))
        facts.append(("memory", verdict(estimate, ram, vram, exact=False) + " (estimated from the download size)"))
    facts.append(("engines", ", ".join(spec.engines)))
    if spec.languages:
        facts.append(("languages", ", ".join(spec.languages)))
    partly = store.partial(spec.location, str(spec.file))
    facts.append(("downloaded", f"{'partly' if partly else 'no'}: chatterm pull {spec.name} gets it"))
    return _aligned(facts)


_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
               12: "Q3_K_M", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def _file_type(meta: dict) -> str:
    """llama.cpp's name for `general.file_type` (enum llama_ftype)."""
    kind = meta.get("general.file_type")
    return _FILE_TYPES.get(kind, f"file type {kind}") if kind is not None else "?"


def _template_text(spec: ModelSpec, model: gguf.GGUFFile) -> str:
    if spec.template != "gguf":
        return f"{spec.template} (preset)"
    template = model.chat_template
    if not template:
        return "none in the file (chatterm uses chatml)"
    first = [line.strip() for line in template.strip().splitlines()[:3]]
    text = " ⏎ ".join(first)
    return f"from the file, {len(template):,} characters: {text[:160]}{'…' if len(text) > 160 else ''}"


def _stops(spec: ModelSpec, model: gguf.GGUFFile) -> list[str]:
    stops = list(spec.stop)
    tokens = model.metadata.get("tokenizer.ggml.tokens")
    eos = model.metadata.get("tokenizer.ggml.eos_token_id")
    if tokens is not None and isinstance(eos, int) and 0 <= eos < len(tokens):
        name = tokens[eos]
        if name not in stops:
            stops.insert(0, name)
    return [s.replace("\n", "\\n") for s in stops]


def spec_for(catalog: Catalog, name_or_path: str) -> ModelSpec:
    spec = catalog.find(name_or_path)
    if spec.source == "path" and not os.path.exists(spec.location):

        raise ModelFileError(f"{name_or_path}: no such model (not in the catalogue, not pulled, not a file)")
    return spec
