"""Read, validate and write GGUF files without loading a native library.

Engines abort or segfault on some malformed files (ctransformers does, verified), so
every model file is parsed and bounds-checked here first; a bad file becomes a
`ModelFileError` with one line that says what is wrong.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from chatterm import safe_files
from chatterm.errors import ModelFileError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Value types of the GGUF key/value section.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {
    U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
    F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d",
}

# ggml tensor types: (block size in elements, bytes per block). Types absent here are
# rejected, which is also what keeps an unknown quantisation away from the engines.
TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1),
    25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

_U64 = struct.Struct("<Q")


class LazyStrings(Sequence):
    """A large string array of a GGUF file, read from disk on first use."""

    def __init__(self, path: Path, offset: int, count: int, nbytes: int):
        self.path, self.offset, self.length, self.nbytes = path, offset, count, nbytes
        self._items: list[str] | None = None

    def _load(self) -> list[str]:
        if self._items is None:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.nbytes)
            if len(data) != self.nbytes:
                raise ModelFileError(f"{self.path}: truncated (the file changed while in use)")
            self._items = _strings(data, self.length)
        return self._items

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: Any) -> Any:
        return self._load()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())


def _strings(data: bytes, count: int) -> list[str]:
    """`count` length-prefixed strings laid end to end, whose bounds `read` checked.
    One tight loop: a vocabulary's 49k tokens and 49k merges decode in a fraction of the
    time a bounds-checked cursor takes, and ctransformers' tokenizer waits for them."""
    items, pos, unpack = [], 0, _U64.unpack_from
    for _ in range(count):
        n = unpack(data, pos)[0]
        pos += 8
        # Some vocabularies hold invalid UTF-8 pieces: surrogate escapes keep them lossless.
        items.append(data[pos:pos + n].decode("utf-8", "surrogateescape"))
        pos += n
    return items


# A file claiming more entries than this is corrupt, not large (real ones have < 2k).
_MAX_COUNT = 1 << 24


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: int
    offset: int  # relative to the start of the data section
    nbytes: int


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[Tensor]
    data_offset: int
    # Raw value types of the metadata, so a rewrite keeps every key's exact type.
    types: dict[str, tuple[int, int | None]] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if value is not None else None

    @property
    def block_count(self) -> int:
        return int(self.arch_value("block_count", 0))

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def tensor(self, name: str) -> Tensor | None:
        return next((t for t in self.tensors if t.name == name), None)


class _Reader:
    """Bounds-checked cursor over the bytes of a file."""

    def __init__(self, buf: Any, size: int, path: Path):
        self.buf, self.size, self.pos, self.path, self.what = buf, size, 0, path, str(path)

    def take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > self.size:
            raise self.truncated(start + n)
        self.pos = start + n
        return start

    def truncated(self, needed: int) -> ModelFileError:
        return ModelFileError(f"{self.what}: truncated: the file has {self.size:,} bytes, its header needs "
                              f"{needed:,} or more (a download cut short?)")

    def scalar(self, kind: int) -> Any:
        fmt = _SCALAR[kind]
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt)))[0]

    def u32(self) -> int:
        return struct.unpack_from("<I", self.buf, self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack_from("<Q", self.buf, self.take(8))[0]

    def count(self, label: str) -> int:
        n = self.u64()
        if n > _MAX_COUNT:
            raise ModelFileError(f"{self.what}: corrupt GGUF ({label} count {n} is impossible)")
        return n

    def string(self) -> str:
        n = self.u64()
        start = self.take(n)
        try:
            return bytes(self.buf[start:start + n]).decode("utf-8")
        except UnicodeDecodeError:
            # Some vocabularies hold invalid UTF-8 pieces; keep them lossless.
            return bytes(self.buf[start:start + n]).decode("utf-8", "surrogateescape")

    def value(self, kind: int) -> tuple[Any, int | None]:
        if kind in _SCALAR:
            return self.scalar(kind), None
        if kind == STRING:
            return self.string(), None
        if kind == ARRAY:
            item = self.u32()
            n = self.count("array")
            if item == STRING:
                if n <= 256:
                    return [self.string() for _ in range(n)], item
                # Vocabularies: only skip them now (validation), decode on first use.
                start, unpack, buf = self.pos, _U64.unpack_from, self.buf
                pos = start
                for _ in range(n):
                    if pos + 8 > self.size:
                        raise self.truncated(pos + 8)
                    pos += 8 + unpack(buf, pos)[0]
                self.take(pos - start)
                return LazyStrings(self.path, start, n, pos - start), item
            if item in _SCALAR:
                fmt = _SCALAR[item]
                width = struct.calcsize(fmt)
                start = self.take(width * n)
                return list(struct.unpack_from(f"<{n}{fmt[1]}", self.buf, start)), item
            raise ModelFileError(f"{self.what}: corrupt GGUF (array of unknown type {item})")
        raise ModelFileError(f"{self.what}: corrupt GGUF (unknown value type {kind})")


def _regular(path: str | os.PathLike[str], what: str) -> None:
    """A FIFO, a device or a symlink loop is refused before it is opened (opening a FIFO
    blocks; reading a device may never end)."""
    why = safe_files.why_unreadable(Path(path))
    if why not in (None, "no such file", "a folder"):  # those two: _open_errors' own words
        raise ModelFileError(f"{what}: {why}, not a model file")


@contextmanager
def _open_errors(what: str) -> Iterator[None]:
    """OS errors on opening a model file, as one-line ModelFileErrors."""
    try:
        yield
    except FileNotFoundError:
        raise ModelFileError(f"{what}: model file not found") from None
    except IsADirectoryError:
        raise ModelFileError(f"{what}: is a directory, not a model file") from None
    except PermissionError:
        raise ModelFileError(f"{what}: permission denied") from None


def read(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse and validate a GGUF file: header, metadata and that every tensor's data
    lies inside the file. Raises ModelFileError with a one-line reason."""
    path = Path(path)
    what = str(path)
    _regular(path, what)
    try:
        with _open_errors(what), open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise ModelFileError(
                    f"{what}: not a model file ({'empty' if size == 0 else f'only {size} bytes'})")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(path, buf, size, what)
    except (ValueError, OverflowError, MemoryError, struct.error) as e:
        raise ModelFileError(f"{what}: corrupt GGUF ({e})") from None


def _parse(path: Path, buf: Any, size: int, what: str) -> GGUFFile:
    r = _Reader(buf, size, path)
    if bytes(buf[:4]) != MAGIC:
        raise ModelFileError(f"{what}: not a GGUF model file (wrong magic bytes)")
    r.take(4)
    version = r.u32()
    if version > 3 or version == 0:
        raise ModelFileError(f"{what}: corrupt or unsupported GGUF (version field {version})")
    if version == 1:
        raise ModelFileError(f"{what}: GGUF version 1 is obsolete; convert the model again")
    n_tensors = r.count("tensor")
    n_kv = r.count("metadata")
    metadata: dict[str, Any] = {}
    types: dict[str, tuple[int, int | None]] = {}
    for _ in range(n_kv):
        key = r.string()
        kind = r.u32()
        metadata[key], item = r.value(kind)
        types[key] = (kind, item)
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.u32()
        if not 1 <= n_dims <= 4:
            raise ModelFileError(f"{what}: corrupt GGUF (tensor {name!r} has {n_dims} dimensions)")
        shape = tuple(r.u64() for _ in range(n_dims))
        ttype = r.u32()
        offset = r.u64()
        if ttype not in TENSOR_TYPES:
            raise ModelFileError(f"{what}: tensor {name!r} has unsupported type {ttype}")
        _, block, block_bytes = TENSOR_TYPES[ttype]
        elements = 1
        for d in shape:
            elements *= d
        if shape[0] % block:
            raise ModelFileError(f"{what}: corrupt GGUF (tensor {name!r} shape {shape})")
        tensors.append(Tensor(name, shape, ttype, offset, elements // block * block_bytes))
    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    if alignment <= 0 or alignment & (alignment - 1):
        raise ModelFileError(f"{what}: corrupt GGUF (alignment {alignment})")
    data_offset = -(-r.pos // alignment) * alignment
    for t in tensors:
        end = data_offset + t.offset + t.nbytes
        if t.offset % alignment or end > size:
            raise ModelFileError(
                f"{what}: truncated or corrupt model file (tensor {t.name!r} ends at byte "
                f"{end:,}, file has {size:,})")
    if not tensors:
        raise ModelFileError(f"{what}: GGUF file holds no tensors (a vocabulary-only file?)")
    return GGUFFile(path, version, metadata, tensors, data_offset, types)


VOCAB_SLACK = 128  # tokens one vocabulary may have beyond another's (llama.cpp's speculative rule)


def vocabulary_mismatch(model: GGUFFile, draft: GGUFFile) -> str | None:
    """Why `draft` cannot draft tokens for `model` (their token ids mean other things),
    or None: the same tokenizer, the same tokens where both have them, at most
    VOCAB_SLACK more in one of them (families pad their larger models' vocabularies)."""
    a, b = model.metadata, draft.metadata
    if a.get("tokenizer.ggml.model") != b.get("tokenizer.ggml.model"):
        return (f"another tokenizer ({b.get('tokenizer.ggml.model')!r}, "
                f"the model's is {a.get('tokenizer.ggml.model')!r})")
    ta, tb = a.get("tokenizer.ggml.tokens") or [], b.get("tokenizer.ggml.tokens") or []
    if abs(len(ta) - len(tb)) > VOCAB_SLACK:
        return f"another vocabulary ({len(tb):,} tokens, the model's has {len(ta):,})"
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        if a.get(key) != b.get(key):
            return f"another {key.split('.')[-1].replace('_', ' ')} ({b.get(key)}, the model's is {a.get(key)})"
    for i, (x, y) in enumerate(zip(ta, tb)):
        if x != y:
            return f"another vocabulary (token {i} is {y!r}, the model's is {x!r})"
    return None


def sniff(path: str | os.PathLike[str]) -> str:
    """'gguf', 'ggml' (a legacy format only ctransformers reads) or raise ModelFileError."""
    what = str(path)
    _regular(path, what)
    with _open_errors(what), open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ModelFileError(f"{what}: not a model file (empty)")
    if head[:4] == MAGIC:
        return "gguf"
    # Legacy GGML magics, stored little-endian: 'ggml', 'ggmf', 'ggjt', and GPT-2
    # style 'lmgg' files written by the ggml examples.
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg", b"ggml", b"ggjt"):
        return "ggml"
    raise ModelFileError(f"{what}: not a GGUF or GGML model file")


# ---------------------------------------------------------------- writing

def _pack_value(kind: int, value: Any, item: int | None) -> bytes:
    if kind in _SCALAR:
        return struct.pack(_SCALAR[kind], value)
    if kind == STRING:
        raw = value.encode("utf-8", "surrogateescape")
        return struct.pack("<Q", len(raw)) + raw
    if kind == ARRAY:
        assert item is not None
        head = struct.pack("<IQ", item, len(value))
        if item == STRING:
            return head + b"".join(_pack_value(STRING, v, None) for v in value)
        return head + struct.pack(f"<{len(value)}{_SCALAR[item][1]}", *value)
    raise ValueError(kind)


def infer_type(value: Any) -> tuple[int, int | None]:
    """The GGUF type for a Python value (for keys a rewrite adds)."""
    if isinstance(value, bool):
        return BOOL, None
    if isinstance(value, int):
        return (U32 if 0 <= value < 1 << 32 else I64), None
    if isinstance(value, float):
        return F32, None
    if isinstance(value, str):
        return STRING, None
    if isinstance(value, list):
        item, _ = infer_type(value[0]) if value else (U32, None)
        return ARRAY, item
    raise TypeError(type(value))


@dataclass
class NewTensor:
    """A tensor to write: its bytes are `data`, or come from `source` at `source_offset`."""

    name: str
    shape: tuple[int, ...]
    type: int
    nbytes: int
    source_offset: int = 0
    data: bytes | None = None


def write(out: BinaryIO, version: int, metadata: dict[str, Any],
          types: dict[str, tuple[int, int | None]], tensors: Iterable[NewTensor],
          source: BinaryIO | None = None, alignment: int = DEFAULT_ALIGNMENT) -> None:
    """Write a GGUF file; tensor bytes are given or copied from `source`."""
    tensors = list(tensors)
    header = [MAGIC, struct.pack("<IQQ", version, len(tensors), len(metadata))]
    for key, value in metadata.items():
        kind, item = types.get(key) or infer_type(value)
        header += [_pack_value(STRING, key, None), struct.pack("<I", kind), _pack_value(kind, value, item)]
    offset = 0
    placed = []
    for t in tensors:
        header += [_pack_value(STRING, t.name, None), struct.pack("<I", len(t.shape)),
                   struct.pack(f"<{len(t.shape)}Q", *t.shape), struct.pack("<IQ", t.type, offset)]
        placed.append((t, offset))
        offset = -(-(offset + t.nbytes) // alignment) * alignment
    blob = b"".join(header)
    out.write(blob)
    out.write(b"\0" * (-len(blob) % alignment))
    written = 0
    for t, at in placed:
        out.write(b"\0" * (at - written))
        written = at + t.nbytes
        if t.data is not None:
            out.write(t.data)
            continue
        assert source is not None
        source.seek(t.source_offset)
        remaining = t.nbytes
        while remaining:
            chunk = source.read(min(remaining, 1 << 22))
            if not chunk:
                raise ModelFileError(f"{getattr(source, 'name', 'model')}: truncated while copying")
            out.write(chunk)
            remaining -= len(chunk)
