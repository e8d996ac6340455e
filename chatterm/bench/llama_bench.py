"""llama.cpp's own figures from `llama-bench`, built from the llama.cpp that the installed
llama-cpp-python vendors (bench/build-llama-bench.sh), run with chatterm's settings:
same model, threads, flash-attention and weight-repacking choices, decode measured at the
chat prompt's depth."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

from chatterm.models.hardware import repack_off_reason
from chatterm.paths import cache_dir


def find(explicit: str | None = None) -> Path | None:
    """--llama-bench, $LLAMA_BENCH, the build script's output for the installed version, or PATH."""
    candidates = [explicit, os.environ.get("LLAMA_BENCH")]
    try:
        version = importlib.metadata.version("llama-cpp-python")
        candidates.append(str(cache_dir() / f"llama-bench-{version}" / "bin" / "llama-bench"))
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(shutil.which("llama-bench"))
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def prompt_rates(binary: Path, model: str, threads: int, flash_attn: bool, repetitions: int,
                 q8_cache: bool = False) -> list[float]:
    """Tokens/s evaluating a 128-token prompt into an empty context (pp128), per repetition."""
    return _samples(_run(binary, model, threads, flash_attn, repetitions, q8_cache, "-p", "128", "-n", "0"))


def decode_rate(binary: Path, model: str, threads: int, flash_attn: bool, n_gen: int, depth: int,
                q8_cache: bool = False) -> float:
    """Tokens/s generating `n_gen` tokens after `depth` tokens of context (tgN @ dD), one run.
    `q8_cache`: the KV cache in Q8_0, as chatterm has it for exact batches (`_new_context`)."""
    return rate(binary, model, threads, flash_attn, q8_cache, "-p", "0", "-n", str(n_gen), "-d", str(depth))


def rate(binary: Path, model: str, threads: int, flash_attn: bool, q8_cache: bool, *test: str) -> float:
    """Tokens/s of one llama-bench test (`-p 512 -n 0 -d 3000`), one run."""
    return _samples(_run(binary, model, threads, flash_attn, 1, q8_cache, *test))[0]


def engine_libraries() -> str | None:
    """llama-cpp-python's own llama.cpp libraries: a shared-library llama-bench loads
    them instead of its build's, and measures the very code chatterm runs."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return str(lib) if lib.is_dir() else None


def _run(binary: Path, model: str, threads: int, flash_attn: bool, repetitions: int, q8_cache: bool,
         *test: str) -> subprocess.CompletedProcess:
    cache = ["-ctk", "q8_0", "-ctv", "q8_0"] if q8_cache else []
    command = [str(binary), "-m", model, "-t", str(threads), "-fa", "on" if flash_attn else "off", *cache,
               "--repack", "0" if repack_off_reason() else "1", "-r", str(repetitions), "-o", "json", *test]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment())


def environment() -> dict[str, str]:
    """The environment a llama.cpp tool of the build runs in, on chatterm's libraries."""
    env = dict(os.environ)
    libraries = engine_libraries()
    if libraries:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libraries, env.get("LD_LIBRARY_PATH")]))
    return env


def _samples(result: subprocess.CompletedProcess) -> list[float]:
    if result.returncode:
        raise RuntimeError(f"llama-bench failed: {result.stderr.strip().splitlines()[-1:]}")
    rows = json.loads(result.stdout)
    return [float(x) for x in rows[0]["samples_ts"]]
