"""Choices that depend on the machine: the training precision, and the devices a run says it trains on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import lightning as L


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic in hardware (AVX512-BF16 or AMX), where bf16 autocast
    runs AlexNet about 1.5x faster than float32; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def auto_precision(accelerator: str = "auto") -> str:
    """bf16-mixed on GPUs that support it (16-mixed on older ones) and on CPUs with native bf16, else 32-true.

    The LRN and the loss stay in float32 under bf16-mixed (see alexnet.model.lrn), and
    on the demo task bf16 reaches the same error as float32 in fewer minutes.
    """
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if use_gpu:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity: a SLURM allocation's, a pinned job's)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def where_it_runs(trainer: L.Trainer) -> str:
    """The devices this process trains on, as the log states them: its GPU, or its CPU cores and threads."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'all')})"
    threads = torch.get_num_threads()
    return f"CPU cores {','.join(map(str, usable_cores()))} with {threads} thread{'s' if threads != 1 else ''}"


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for the next batch instead of giving it back (Linux, training on a CPU).

    A CPU batch's tensors are tens of MB each; above glibc's mmap threshold every one is mapped afresh and
    each of its pages faults in again at first touch: on this project's 2-core VM that was three quarters of
    the batch's float work (~340 against ~85 us an image) and ~10% of a CIFAR-10 step (benchmarks/bench.py).
    PyTorch's CPU tuning guide preloads jemalloc or tcmalloc for the same reason; this is glibc's own switch
    (``mallopt``), for the process and the DataLoader workers it forks. The cost: the process keeps its
    peak heap. False where there is no glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or os.name != "posix":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        # Some glibc versions cap the mmap threshold at 32 MiB: ask for the most, then settle for the cap.
        mapped = bool(libc.mallopt(m_mmap_threshold, 1 << 30) or libc.mallopt(m_mmap_threshold, 32 << 20))
        return bool(libc.mallopt(m_trim_threshold, 1 << 30)) and mapped
    except (OSError, AttributeError):  # another C library (musl, macOS)
        return False
