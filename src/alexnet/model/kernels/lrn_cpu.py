"""The LRN's C kernels for the CPU (:mod:`alexnet.model.lrn`): built on first use with the system's C compiler.

``lrn_cpu.c`` beside this file holds them: forward and backward for float32 and bfloat16,
NCHW and channels_last, OpenMP over images and pixel tiles, vectorized for AVX-512/AVX2,
with reciprocal square roots for the paper's beta = 0.75. ``cc -march=native`` builds
them in under a second into the torch extensions directory (``$TORCH_EXTENSIONS_DIR``,
else ``~/.cache/torch_extensions``), keyed by source, flags and CPU; later processes
load the library. Where that fails, :func:`kernels` warns once and returns None, and
the operator uses its GEMM path; ``ALEXNET_LRN_CPU=eager`` skips the build.

Plain C, no torch headers, so that it builds in under a second; called through ctypes (which
drops the GIL). Linked against libgomp.so.1, it shares the OpenMP runtime torch has loaded.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("lrn_cpu.c")
ENV = "ALEXNET_LRN_CPU"  # "eager": the GEMM path on the CPU, no C kernel built


def build_command() -> tuple[list[str], list[str]]:
    """The compiler and its flags, and the libraries (after the source)."""
    compiler = shlex.split(os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc") or "")
    if not compiler:
        raise RuntimeError("no C compiler found (gcc, cc or $CC)")
    flags = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-fPIC", "-shared"]
    libraries = ["-lm"]
    if sys.platform == "linux" and platform.machine() == "x86_64":  # glibc's libmvec, for a general beta
        flags, libraries = [*flags, "-DLRN_MVEC"], ["-lmvec", *libraries]
    return [*compiler, *flags], libraries


def cpu_features() -> str:
    """What -march=native targets: a library built on another CPU may use instructions this one lacks."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line for line in cpuinfo if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor() or platform.machine()


def library() -> Path:
    """The built kernel, from the cache if there, else compiled (atomically: DDP ranks may build at once)."""
    command, libraries = build_command()
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *command, *libraries, cpu_features()]).encode()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "torch_extensions")
    library = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cache, "alexnet_lrn", f"lrn_cpu_{key[:16]}.so")
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        source, built = Path(tmp, "lrn_cpu.c"), Path(tmp, library.name)
        source.write_text(SOURCE.read_text())
        run = subprocess.run(
            [*command, str(source), "-o", str(built), *libraries], capture_output=True, text=True, timeout=300
        )
        if run.returncode:
            raise RuntimeError(f"{shlex.join(command[:1])} failed: {run.stderr.strip()[-400:]}")
        os.replace(built, library)
    return library


_BUILD_LOCK = threading.Lock()


@functools.cache
def kernels() -> ctypes.CDLL | None:
    """The C kernels, built on first use; None (with one warning) where they cannot be built or loaded."""
    with _BUILD_LOCK:
        try:
            kernels = ctypes.CDLL(str(library()))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            warnings.warn(
                f"alexnet.model.lrn: no C kernel for the CPU ({error}); using the slower GEMM path "
                f"(set {ENV}=eager to skip the build)",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
    sizes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    constants = [ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_int]
    for kernel, tensors in ((kernels.lrn_forward, 2), (kernels.lrn_backward, 3)):
        kernel.argtypes, kernel.restype = [ctypes.c_void_p] * tensors + sizes + constants, ctypes.c_int
    return kernels


def run(kernel, tensors: list[Tensor], size: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:
    """A C kernel on ``tensors`` (same shape, dtype and layout, the last its input x), into a new tensor like x."""
    x = tensors[-1]
    out = torch.empty_like(x)  # the same shape, dtype and layout (NCHW or channels_last)
    n, c, h, w = x.shape
    if out.numel():
        bf16 = x.dtype == torch.bfloat16
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        pointers = [t.data_ptr() for t in (*tensors, out)]
        constants = (groups, size, alpha, beta, k, torch.get_num_threads())
        if kernel(*pointers, bf16, channels_last, n, c, h * w, *constants):
            raise MemoryError("alexnet.model.lrn: the C kernel could not allocate its tiles")
    return out
