"""Local response normalization exactly as §3.3 of the paper writes it.

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ^ beta

``torch.nn.LocalResponseNorm`` (and Caffe) divide ``alpha`` by ``n``; the paper
does not. Besides the constant, PyTorch's module is slow: it pads, runs a 3-d
average pool and lets autograd record five intermediate tensors, which costs
about 40% of an AlexNet training step on a CPU. Here the normalization is one
operator, ``alexnet::lrn``, with its backward written out by hand as a second,
``alexnet::lrn_backward``:

    S[i]     = k + alpha * sum_{j in W(i)} a[j]^2
    dL/da[j] = g[j] * S[j]^-beta - 2 * alpha * beta * a[j] * sum_{i in W(j)} g[i] * a[i] * S[i]^(-beta-1)

(``W`` is symmetric, so the transposed window sum is the same window sum.)
Being ``torch.library`` operators with fake kernels, they run on the meta device
(FLOP counting, where they count as no FLOPs: their window GEMMs are not the
model's) and stay whole under ``torch.compile`` instead of being traced into a
dozen elementwise ops.

On a CPU, float32 and bfloat16 take a small C kernel (OpenMP, vectorized for
AVX-512/AVX2, the paper's beta = 0.75 with reciprocal square roots instead of a
pow) that reads each tensor once and, like the Triton kernels of
:mod:`alexnet.model.kernels.lrn_triton` on CUDA, keeps nothing but the input: the backward
recomputes ``S``, which is cheaper than writing and reading it back. Its window
sums run over zero-padded fp32 tiles, so that they stop at group ends without a
mask. :mod:`alexnet.model.kernels.lrn_cpu` builds it (``lrn_cpu.c``, with ``cc -march=native``, under a
second) on first use into the torch extensions directory, and later processes just load it. No compiler, or a failed build, warns once and falls back to the
GEMM path below; ``ALEXNET_LRN_CPU=eager`` forces that path.

The GEMM path (float64, float16, ``ALEXNET_LRN_CPU=eager``, and CUDA without
Triton) computes the channel-window sum as a GEMM with a fixed banded matrix per
group (in NCHW and in channels_last alike), and its forward keeps ``S`` and
``S^-beta`` so that the backward needs one more GEMM and no power. It is the
exact reference: gradcheck runs on it in float64. As the fallback of a failed
build it keeps nothing either (what the operators return must not depend on
whether a compiler worked) and its backward recomputes ``S`` with a third GEMM.

Low-precision inputs (bfloat16/float16 under autocast) are normalized in
float32 and returned in their own dtype: squaring bfloat16 activations loses
the few bits that ``alpha = 1e-4`` acts on.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from alexnet.errors import ConfigError
from alexnet.model.kernels import lrn_cpu

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@functools.cache
def _triton() -> ModuleType | None:
    """The Triton kernels, or None where triton does not import (imported on first use: CPU runs never need it)."""
    try:
        from alexnet.model.kernels import lrn_triton
    except ImportError:
        return None
    return lrn_triton


def _on_triton(x: Tensor) -> bool:
    """Whether ``x`` takes the Triton kernels; the fake kernels ask too, so both agree on what is saved."""
    return x.device.type == "cuda" and x.dtype in (torch.float32, *_LOW_PRECISION) and _triton() is not None


def _on_cpu_kernel(x: Tensor) -> bool:
    """Whether ``x`` takes the C kernel; decided without building it, since the fake kernels ask too."""
    return (
        x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and os.environ.get(lrn_cpu.ENV) != "eager"
    )


def _recomputes(x: Tensor) -> bool:
    """Whether the forward keeps nothing (two empty tensors for ``S``, ``S^-beta``) and the backward recomputes."""
    return _on_triton(x) or _on_cpu_kernel(x)


def _memory_format(x: Tensor) -> torch.memory_format:
    """channels_last for a channels_last input, else NCHW: the layout of every tensor the operators return."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _empty(x: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=_memory_format(x))


@functools.lru_cache(maxsize=64)
def _band(channels: int, size: int, scale: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(C, C) symmetric banded matrix, ``scale`` where j is in i's window (clipped at the ends), else 0.

    Built once per channel count, device and dtype (and constants): a GEMM with it is the window sum.
    """
    idx = torch.arange(channels, device=device)
    return ((idx[:, None] - idx[None, :]).abs() <= size // 2).to(dtype) * scale


def _window_sum(x: Tensor, size: int, groups: int, scale: float, bias: float | None = None) -> Tensor:
    """``scale`` times the sum of each channel's window at every pixel (plus ``bias``), as GEMMs in x's own layout.

    Each group is its own GEMM with the same (C/groups)^2 band, not one GEMM with a block-diagonal (C, C) one:
    half the work for the two towers.
    """
    n, c, h, w = x.shape
    band = _band(c // groups, size, scale, x.device, x.dtype)
    if _memory_format(x) == torch.channels_last:  # (NHW, C/groups) x (C/groups, C/groups) GEMMs
        bias_t = None if bias is None else torch.full((c,), bias, dtype=x.dtype, device=x.device)
        return F.conv2d(x, band.repeat(groups, 1)[:, :, None, None], bias_t, groups=groups)
    flat = x.reshape(n * groups, c // groups, h * w)  # N * groups (C/groups)^2 x (C/groups, HW) GEMMs
    if bias is None:
        return torch.matmul(band, flat).view(n, c, h, w)
    bias_t = torch.tensor(bias, dtype=x.dtype, device=x.device).expand(flat.shape)
    return torch.baddbmm(bias_t, band.expand(n * groups, *band.shape), flat).view(n, c, h, w)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _gemm_forward(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> tuple[Tensor, ...]:
    """``(y, S, S^-beta)`` with the window sum as a GEMM, in float32 for low-precision ``x``."""
    # Autocast would run the window GEMM in bf16.
    with torch.autocast(x.device.type, enabled=False):
        xc = x.to(_compute_dtype(x.dtype))
        scale = _window_sum(xc * xc, size, groups, alpha, bias=k)  # S
        scale_pow = scale.pow(-beta)
        out = xc.mul_(scale_pow).to(x.dtype) if xc is not x else x * scale_pow
    return out, scale, scale_pow


@torch.library.custom_op("alexnet::lrn", mutates_args=())
def lrn(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """The paper's LRN of NCHW ``x`` (``alpha`` as it multiplies the sum): ``(y, S, S^-beta)``.

    ``y`` has x's dtype and layout. ``S`` and ``S^-beta`` (float32 for low-precision
    inputs) are what the GEMM backward needs; the C and Triton kernels recompute
    them and return two empty tensors instead.
    """
    x = x.contiguous(memory_format=_memory_format(x))
    if not _recomputes(x):
        return _gemm_forward(x, size, alpha, beta, k, groups)
    empty = x.new_empty(0, dtype=torch.float32)
    if _on_triton(x):
        out = _triton().forward(x, size, alpha, beta, k, groups)
    elif (kernels := lrn_cpu.kernels()) is not None:
        out = lrn_cpu.run(kernels.lrn_forward, [x], size, alpha, beta, k, groups)
    else:  # no C kernel: the GEMM, and the backward recomputes
        out = _gemm_forward(x, size, alpha, beta, k, groups)[0]
    return out, empty, empty.clone()


@lrn.register_fake
def _(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> tuple[Tensor, Tensor, Tensor]:
    if _recomputes(x):
        return _empty(x, x.dtype), x.new_empty(0, dtype=torch.float32), x.new_empty(0, dtype=torch.float32)
    compute = _compute_dtype(x.dtype)
    return _empty(x, x.dtype), _empty(x, compute), _empty(x, compute)


@torch.library.custom_op("alexnet::lrn_backward", mutates_args=())
def lrn_backward(
    grad: Tensor,
    x: Tensor,
    scale: Tensor,
    scale_pow: Tensor,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    groups: int,
) -> Tensor:
    """dL/dx of :func:`lrn` from dL/dy, its input and the ``S``, ``S^-beta`` it returned (or two empty tensors)."""
    fmt = _memory_format(x)
    grad, x = grad.to(x.dtype).contiguous(memory_format=fmt), x.contiguous(memory_format=fmt)
    if _on_triton(x):
        return _triton().backward(grad, x, size, alpha, beta, k, groups)
    if scale.shape != x.shape:  # the forward kept nothing
        if _on_cpu_kernel(x) and (kernels := lrn_cpu.kernels()) is not None:
            return lrn_cpu.run(kernels.lrn_backward, [grad, x], size, alpha, beta, k, groups)
        _, scale, scale_pow = _gemm_forward(x, size, alpha, beta, k, groups)
    with torch.autocast(x.device.type, enabled=False):
        compute = scale.dtype
        xc, grad_pow = x.to(compute), grad.to(compute) * scale_pow  # g * S^-beta
        # window(g * a * S^(-beta-1)), times 2 * alpha * beta (in the band)
        inner = _window_sum((grad_pow * xc).div_(scale), size, groups, 2.0 * alpha * beta)
        return grad_pow.addcmul_(xc, inner, value=-1.0).to(x.dtype)


@lrn_backward.register_fake
def _(
    grad: Tensor,
    x: Tensor,
    scale: Tensor,
    scale_pow: Tensor,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    groups: int,
) -> Tensor:
    return _empty(x, x.dtype)


def _setup_context(ctx, inputs: tuple, output: tuple[Tensor, Tensor, Tensor]) -> None:
    x, ctx.constants = inputs[0], inputs[1:]
    _, scale, scale_pow = output
    ctx.mark_non_differentiable(scale, scale_pow)
    ctx.set_materialize_grads(False)  # no zero gradients for S and S^-beta
    ctx.save_for_backward(x, scale, scale_pow)


def _backward(ctx, grad: Tensor | None, *_: Tensor | None) -> tuple[Tensor | None, None, None, None, None, None]:
    x, scale, scale_pow = ctx.saved_tensors
    if grad is None or not ctx.needs_input_grad[0]:
        return None, None, None, None, None, None
    return lrn_backward(grad, x, scale, scale_pow, *ctx.constants), None, None, None, None, None


lrn.register_autograd(_backward, setup_context=_setup_context)


class LocalResponseNorm(nn.Module):
    """Cross-channel local response normalization of §3.3 (paper constants by default).

    Args:
        size: ``n``, the number of neighbouring channels summed (odd: ``n // 2`` on
            each side of the centre channel, clipped at the first and last channel).
        alpha: multiplies the sum of squares, as in the paper.
        beta: the exponent.
        k: the additive constant.
        divide_alpha_by_size: use ``alpha / size`` instead, the reading of Caffe,
            cuda-convnet and ``torch.nn.LocalResponseNorm``.
        groups: normalize each of ``groups`` equal blocks of channels on its own, the
            window clipped at the block's ends. The paper's two towers each normalize
            their own kernel maps (a GPU cannot see the other's), so the two-tower net
            in one process uses ``groups=2``, and one tower of it ``groups=1``.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        divide_alpha_by_size: bool = False,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ConfigError(
                f"LocalResponseNorm size must be a positive odd number (the window is centred), got {size}"
            )
        if k <= 0 or alpha < 0:
            raise ConfigError(f"LocalResponseNorm needs k > 0 and alpha >= 0, got k={k}, alpha={alpha}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        if groups < 1:
            raise ConfigError(f"LocalResponseNorm groups must be >= 1, got {groups}")
        self.divide_alpha_by_size, self.groups = divide_alpha_by_size, groups

    @property
    def effective_alpha(self) -> float:
        """The coefficient that actually multiplies the window sum of squares."""
        return self.alpha / self.size if self.divide_alpha_by_size else self.alpha

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"LocalResponseNorm expects NCHW input, got shape {tuple(x.shape)}")
        if x.shape[1] % self.groups:
            raise ValueError(f"LocalResponseNorm: {x.shape[1]} channels do not split into {self.groups} groups")
        return lrn(x, self.size, float(self.effective_alpha), float(self.beta), float(self.k), self.groups)[0]

    def one_group(self) -> LocalResponseNorm:
        """The same normalization for the maps of one group alone: what each process of a tower pair runs."""
        return LocalResponseNorm(
            size=self.size, alpha=self.alpha, beta=self.beta, k=self.k, divide_alpha_by_size=self.divide_alpha_by_size
        )

    def extra_repr(self) -> str:
        extra = ", divide_alpha_by_size=True" if self.divide_alpha_by_size else ""
        extra += f", groups={self.groups}" if self.groups > 1 else ""
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}{extra}"
