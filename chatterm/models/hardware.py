"""What this machine can run: CPU features, and whether there is a CUDA GPU that the
installed engine builds may use.

Engines ask here and record what they decided as notes (`Engine.notes`): the user sees
them once, and `/stats` shows them, so nobody is left guessing why a model runs where
and how it does.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

ALL_LAYERS = 1_000_000  # "as many as the model has" for engines that want a number


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo; empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def repack_off_reason(flags: frozenset[str] | None = None) -> str | None:
    """Why llama.cpp must load without extra buffer types (weight repacking), or None.

    On CPUs with AMX, a native llama.cpp build routes matrix products of repacked
    weights through `ggml_backend_amx_mul_mat`, which crashes (SIGSEGV) on the first
    decode (llama.cpp issue 20824, unfixed; docs/engines.md). Without extra
    buffer types the same CPU decodes at full speed with the AVX-512 kernels. Other CPUs
    keep repacking: it speeds up Q4_0, IQ4_NL and Q4_K there."""
    flags = cpu_flags() if flags is None else flags
    if flags & {"amx_int8", "amx_tile", "amx_bf16"}:
        return "weight repacking off: AMX (llama.cpp's AMX kernels crash, llama.cpp#20824)"
    return None


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


def available_ram() -> int | None:
    """Bytes of RAM available now without swapping (MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


@lru_cache(maxsize=1)
def free_vram() -> int | None:
    """Free bytes on the first CUDA GPU, from NVML (no CUDA context is created, so this
    costs no VRAM); None without an NVIDIA driver."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    device, memory = ctypes.c_void_p(), _NvmlMemory()
    if (nvml.nvmlInit_v2() != 0 or nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(device)) != 0
            or nvml.nvmlDeviceGetMemoryInfo(device, ctypes.byref(memory)) != 0):
        return None
    return int(memory.free)


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


def fitted_note(layers: int) -> str | None:
    """What `--gpu-layers auto` chose when the whole model does not fit the free VRAM."""
    if layers < 0:
        return None
    free = free_vram()
    where = f"{free / 1e9:.1f} GB free VRAM" if free is not None else "the free VRAM"
    if layers == 0:
        return f"running on the CPU: no layer fits {where}"
    return f"{layers} layers on the GPU, the rest on the CPU: what fits {where} (--gpu-layers N to choose)"


def llamacpp_gpu_layers(requested: int | str, build_has_cuda: bool,
                        fitted: int = -1) -> tuple[int, str | None]:
    """llama.cpp's n_gpu_layers (-1 = all) for a request of a count or 'auto', and a
    note for the user when the request cannot be met or the CPU was chosen for them.
    `fitted`: the layers `chatterm.models.fit` found room for (-1: all)."""
    if requested == "auto":
        if build_has_cuda and cuda_device_count() > 0:
            return fitted, fitted_note(fitted)
        why = ("no CUDA GPU found" if build_has_cuda
               else "this llama-cpp-python build has no CUDA; see docs/guide/engines-and-gpu.md")
        return 0, f"running on the CPU ({why})"
    if requested and not build_has_cuda:
        return 0, "this llama-cpp-python build has no GPU support; running on the CPU"
    return int(requested), None


def ctransformers_cuda_ready() -> bool:
    """ctransformers' CUDA library loads only with the NVIDIA runtime wheels that
    `ctransformers[cuda]` installs."""
    try:
        import nvidia  # noqa: F401  (namespace package from the nvidia-* wheels)
    except ImportError:
        return False
    base = Path(list(nvidia.__path__)[0])
    return (base / "cuda_runtime/lib/libcudart.so.12").is_file() and (base / "cublas/lib/libcublas.so.12").is_file()


def ctransformers_gpu_layers(requested: int | str, n_layers: int, fitted: int = -1) -> tuple[int, str | None]:
    if requested == "auto":
        if cuda_device_count() > 0 and ctransformers_cuda_ready():
            return (n_layers or ALL_LAYERS) if fitted < 0 else fitted, fitted_note(fitted)
        return 0, "running on the CPU (" + ("no CUDA GPU found" if cuda_device_count() == 0 else
                                            "ctransformers' CUDA runtime is not installed: "
                                            "pip install 'ctransformers[cuda]'") + ")"
    if requested == -1:
        return n_layers or ALL_LAYERS, None
    if requested and not ctransformers_cuda_ready():
        return 0, "ctransformers' CUDA runtime is not installed (pip install 'ctransformers[cuda]'); running on the CPU"
    return int(requested), None
