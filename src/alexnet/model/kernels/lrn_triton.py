"""Triton kernels for the paper's LRN (:mod:`alexnet.model.lrn`) on CUDA, forward and backward.

Each program normalizes a (channels x pixels) tile of one image through the strides
of an (N, C, H*W) view, so NCHW and channels_last run the same kernels, the tile long
along whichever of the two is contiguous (coalesced loads). A channel window is 2r+1
loads of the tile shifted by -r..r channels, masked at the ends of the channel's
group: the shifted rows are the neighbouring tiles' own loads, served by L1/L2, so
DRAM sees each tensor about once. Math is float32; loads and stores are in the
tensor's dtype.

Nothing but x is kept for the backward: it reads g and x, writes dx, and recomputes
S for each channel i of j's window from the 4r+1 rows of x around j (held in
registers). In bfloat16 that is 10 bytes per element for forward and backward
together. Saving S in float32 would make it 18 (S written, then read) and keep 4
more bytes per element alive, and would not spare the powers: the backward needs
S[i]^(-beta-1) for every i of a window, 2(2r+1)+1 exp2/log2 per element (11 for
n=5), so it may well be bound by the special-function units rather than by DRAM.
Saving S^(-beta-1) instead would remove them for 8 more bytes per element: the one
trade to measure on a GPU.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@triton.jit
def _tile(pid, num_c_blocks, num_p_blocks, C, P, group_c, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """The channels and pixels of program ``pid`` (channel blocks vary fastest: neighbours share halos in L2)."""
    c = (pid % num_c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = ((pid // num_c_blocks) % num_p_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = pid // (num_c_blocks * num_p_blocks)
    lo = (c // group_c) * group_c  # the window stays in [lo, lo + group_c)
    return n, c, p, c < C, p < P, lo, lo + group_c


@triton.jit
def _lrn_fwd_kernel(
    x_ptr,
    y_ptr,
    C,
    P,
    group_c,
    num_c_blocks,
    num_p_blocks,
    stride_n,
    stride_c,
    stride_p,
    alpha,
    beta,
    k,
    RADIUS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    n, c, p, c_ok, p_ok, lo, hi = _tile(tl.program_id(0), num_c_blocks, num_p_blocks, C, P, group_c, BLOCK_C, BLOCK_P)
    base = n.to(tl.int64) * stride_n
    p_off = (p * stride_p)[None, :]
    sum_sq = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    for d in tl.static_range(-RADIUS, RADIUS + 1):
        cd = c + d
        mask = (c_ok & (cd >= lo) & (cd < hi))[:, None] & p_ok[None, :]
        v = tl.load(x_ptr + base + (cd * stride_c)[:, None] + p_off, mask=mask, other=0.0).to(tl.float32)
        sum_sq += v * v
        if d == 0:
            x = v
    y = x * tl.exp2(-beta * tl.log2(k + alpha * sum_sq))  # x * S^-beta
    mask = c_ok[:, None] & p_ok[None, :]
    tl.store(y_ptr + base + (c * stride_c)[:, None] + p_off, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _lrn_bwd_kernel(
    g_ptr,
    x_ptr,
    dx_ptr,
    C,
    P,
    group_c,
    num_c_blocks,
    num_p_blocks,
    stride_n,
    stride_c,
    stride_p,
    alpha,
    beta,
    k,
    RADIUS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    n, c, p, c_ok, p_ok, lo, hi = _tile(tl.program_id(0), num_c_blocks, num_p_blocks, C, P, group_c, BLOCK_C, BLOCK_P)
    base = n.to(tl.int64) * stride_n
    p_off = (p * stride_p)[None, :]
    # The windows of j's window reach 2r channels each way: load those 4r+1 rows once (0 outside j's group).
    rows = ()
    for e in tl.static_range(-2 * RADIUS, 2 * RADIUS + 1):
        ce = c + e
        mask = (c_ok & (ce >= lo) & (ce < hi))[:, None] & p_ok[None, :]
        row = tl.load(x_ptr + base + (ce * stride_c)[:, None] + p_off, mask=mask, other=0.0).to(tl.float32)
        rows = rows + (row,)  # noqa: RUF005 (Triton's compiler has no starred unpacking)
    # sum_{i in W(j)} g[i] * a[i] * S[i]^(-beta-1), S[i] recomputed over i's own window (in j's group too)
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    for d in tl.static_range(-RADIUS, RADIUS + 1):
        ci = c + d
        sum_sq = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
        for e in tl.static_range(d - RADIUS, d + RADIUS + 1):
            sum_sq += rows[2 * RADIUS + e] * rows[2 * RADIUS + e]
        mask = (c_ok & (ci >= lo) & (ci < hi))[:, None] & p_ok[None, :]
        g_i = tl.load(g_ptr + base + (ci * stride_c)[:, None] + p_off, mask=mask, other=0.0).to(tl.float32)
        log_s = tl.log2(k + alpha * sum_sq)
        acc += g_i * rows[2 * RADIUS + d] * tl.exp2((-beta - 1.0) * log_s)
        if d == 0:
            g_j, log_s_j = g_i, log_s
    dx = g_j * tl.exp2(-beta * log_s_j) - 2.0 * alpha * beta * rows[2 * RADIUS] * acc
    mask = c_ok[:, None] & p_ok[None, :]
    tl.store(dx_ptr + base + (c * stride_c)[:, None] + p_off, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _strides(x: Tensor) -> tuple[int, int, int] | None:
    """Strides of x as (N, C, H*W), or None where H and W do not merge into one pixel stride."""
    _, _, h, w = x.shape
    stride_n, stride_c, stride_h, stride_w = x.stride()
    if h * w <= 1:
        return stride_n, stride_c, 1
    if w == 1:
        return stride_n, stride_c, stride_h
    if h == 1 or stride_h == w * stride_w:
        return stride_n, stride_c, stride_w
    return None


def _checked(x: Tensor) -> Tensor:
    """x itself if NCHW or channels_last (dense: an output like it has its strides), else an NCHW copy."""
    if x.dtype not in _DTYPES:
        raise TypeError(f"lrn_triton handles {', '.join(map(str, _DTYPES))}, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"lrn_triton expects NCHW input, got shape {tuple(x.shape)}")
    return x if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last) else x.contiguous()


def _launch(kernel, tensors: tuple[Tensor, ...], size: int, alpha: float, beta: float, k: float, groups: int) -> None:
    """One program per (channel block, pixel block, image); the tile is long along the contiguous dimension.

    Tiles of 1024 elements in the forward and 512 in the backward (256 for windows over 5), 4 warps: the
    backward keeps 4r+1 rows of x in registers, and these sizes compile for sm_90 without spills.
    """
    x = tensors[0]
    n, c, h, w = x.shape
    if size < 1 or size % 2 == 0 or groups < 1 or c % groups:
        raise ValueError(f"lrn_triton needs an odd size and groups dividing {c} channels, got {size=}, {groups=}")
    if x.numel() == 0:
        return
    if c * h * w >= 2**31:
        raise ValueError(f"lrn_triton: one image of {c}x{h}x{w} elements needs 64-bit offsets")
    stride_n, stride_c, stride_p = _strides(x)  # every tensor has x's strides
    tile = 1024 if kernel is _lrn_fwd_kernel else 512 if size <= 5 else 256
    block_c = min(triton.next_power_of_2(c), 64 if stride_c == 1 else 16)  # 64 channels: 128 bytes in bf16
    block_p = tile // block_c
    num_c_blocks, num_p_blocks = triton.cdiv(c, block_c), triton.cdiv(h * w, block_p)
    grid = (num_c_blocks * num_p_blocks * n,)
    kernel[grid](
        *tensors,
        c,
        h * w,
        c // groups,
        num_c_blocks,
        num_p_blocks,
        stride_n,
        stride_c,
        stride_p,
        float(alpha),
        float(beta),
        float(k),
        RADIUS=size // 2,
        BLOCK_C=block_c,
        BLOCK_P=block_p,
        num_warps=4,
    )


def forward(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:
    """y = x * (k + alpha * window(x^2))^-beta in x's dtype and layout (``alpha`` as it multiplies the sum).

    No fallback: this runs the kernels or fails (on CPU tensors only under ``TRITON_INTERPRET=1``).
    """
    x = _checked(x)
    y = torch.empty_like(x)  # x's strides
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _launch(_lrn_fwd_kernel, (x, y), size, alpha, beta, k, groups)
    return y


def backward(grad: Tensor, x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:
    """dL/dx of :func:`forward` from dL/dy and x, in x's dtype and layout."""
    x = _checked(x)
    if grad.dtype != x.dtype or grad.shape != x.shape or _strides(grad) != _strides(x):
        grad = torch.empty_like(x).copy_(grad)
    grad_x = torch.empty_like(x)
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _launch(_lrn_bwd_kernel, (grad, x, grad_x), size, alpha, beta, k, groups)
    return grad_x
