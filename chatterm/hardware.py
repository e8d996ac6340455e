"""Is there a CUDA GPU, and may the installed engine builds use it?

`--gpu-layers auto` offloads every layer when both hold and runs on the CPU otherwise;
the choice is said once per process (on stderr) so a user is never left guessing.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache
from pathlib import Path

ALL_LAYERS = 1_000_000  # "as many as the model has" for engines that want a number

_said: set[str] = set()


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """CUDA devices the driver reports; 0 without a driver. Cheap: no CUDA runtime."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
            return count.value
        return 0
    return 0


def say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        print(f"chatterm: {message}", file=sys.stderr)


def parse_gpu_layers(value: str | int) -> int | str:
    if value == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--gpu-layers takes a number or 'auto', not {value!r}") from None
    if n < -1:
        raise ValueError("--gpu-layers must be -1 (all), 0 (CPU) or a positive count")
    return n


def llamacpp_gpu_layers(requested: int | str, build_has_cuda: bool) -> int:
    """llama.cpp's n_gpu_layers (-1 = all) for a request of a count or 'auto'."""
    if requested == "auto":
        if build_has_cuda and cuda_device_count() > 0:
            return -1
        say_once("running on the CPU (" + ("no CUDA GPU found" if build_has_cuda else
                 "this llama-cpp-python build has no CUDA; see README, 'GPU'") + ")")
        return 0
    if requested and not build_has_cuda:
        say_once("this llama-cpp-python build has no GPU support; running on the CPU")
        return 0
    return int(requested)


def ctransformers_cuda_ready() -> bool:
    """ctransformers' CUDA library loads only with the NVIDIA runtime wheels that
    `ctransformers[cuda]` installs."""
    try:
        import nvidia  # noqa: F401  (namespace package from the nvidia-* wheels)
    except ImportError:
        return False
    base = Path(list(nvidia.__path__)[0])
    return (base / "cuda_runtime/lib/libcudart.so.12").is_file() and (base / "cublas/lib/libcublas.so.12").is_file()


def ctransformers_gpu_layers(requested: int | str, n_layers: int) -> int:
    if requested == "auto":
        if cuda_device_count() > 0 and ctransformers_cuda_ready():
            return n_layers or ALL_LAYERS
        say_once("running on the CPU (" + ("no CUDA GPU found" if cuda_device_count() == 0 else
                 "ctransformers' CUDA runtime is not installed: pip install 'ctransformers[cuda]'") + ")")
        return 0
    if requested == -1:
        return n_layers or ALL_LAYERS
    if requested and not ctransformers_cuda_ready():
        say_once("ctransformers' CUDA runtime is not installed (pip install 'ctransformers[cuda]'); running on the CPU")
        return 0
    return int(requested)
