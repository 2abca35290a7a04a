"""Local response normalization exactly as §3.3 of the paper writes it.

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ^ beta

``torch.nn.LocalResponseNorm`` (and Caffe) divide ``alpha`` by ``n``; the paper
does not. Besides the constant, PyTorch's module is slow: it pads, runs a 3-d
average pool and lets autograd record five intermediate tensors, which costs
about 40% of an AlexNet training step on a CPU. Here the channel-window sum is
one GEMM with a fixed banded 0/1 matrix (in NCHW and in channels_last alike), and the backward pass is written out by hand so that it
needs one more window sum instead of an autograd graph:

    S[i]     = k + alpha * sum_{j in W(i)} a[j]^2
    dL/da[j] = g[j] * S[j]^-beta - 2 * alpha * beta * a[j] * sum_{i in W(j)} g[i] * a[i] * S[i]^(-beta-1)

(``W`` is symmetric, so the transposed window sum is the same window sum.)
Low-precision inputs (bfloat16/float16 under autocast) are normalized in
float32 and returned in their own dtype: squaring bfloat16 activations loses
the few bits that ``alpha = 1e-4`` acts on.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _band(channels: int, size: int, groups: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(C, C) symmetric 0/1 matrix: row i marks the channels of i's window, clipped at its group's ends."""
    idx = torch.arange(channels, device=device)
    group = idx // (channels // groups)
    near = (idx[:, None] - idx[None, :]).abs() <= size // 2
    return (near & (group[:, None] == group[None, :])).to(dtype)


def _window_sum(x: Tensor, band: Tensor) -> Tensor:
    """Sum of each channel's window at every pixel, as one GEMM in x's own layout."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.conv2d(x, band[:, :, None, None])  # a (NHW, C) x (C, C) GEMM
    n, c, h, w = x.shape
    return (band @ x.reshape(n, c, h * w)).view(n, c, h, w)  # N (C, C) x (C, HW) GEMMs


class _LRNFunction(torch.autograd.Function):
    """y = x * S^-beta with S = k + alpha * window(x^2); ``band`` arrives scaled by alpha."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha_band: Tensor, beta: float, k: float) -> Tensor:
        scale = _window_sum(x * x, alpha_band).add_(k)  # S
        scale_pow = scale.pow(-beta)  # S^-beta
        ctx.save_for_backward(x, scale, scale_pow, alpha_band)
        ctx.beta = beta
        return x * scale_pow

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, scale, scale_pow, alpha_band = ctx.saved_tensors
        # window(g * a * S^(-beta-1)), times 2 * alpha * beta (alpha is in the band)
        inner = _window_sum((grad * x).mul_(scale_pow).div_(scale), alpha_band).mul_(2.0 * ctx.beta)
        grad_x = torch.addcmul(grad * scale_pow, x, inner, value=-1.0)
        return grad_x, None, None, None


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
            raise ValueError(
                f"LocalResponseNorm size must be a positive odd number (the window is centred), got {size}"
            )
        if k <= 0 or alpha < 0:
            raise ValueError(f"LocalResponseNorm needs k > 0 and alpha >= 0, got k={k}, alpha={alpha}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        if groups < 1:
            raise ValueError(f"LocalResponseNorm groups must be >= 1, got {groups}")
        self.divide_alpha_by_size, self.groups = divide_alpha_by_size, groups
        self._bands: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}

    @property
    def effective_alpha(self) -> float:
        """The coefficient that actually multiplies the window sum of squares."""
        return self.alpha / self.size if self.divide_alpha_by_size else self.alpha

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"LocalResponseNorm expects NCHW input, got shape {tuple(x.shape)}")
        if x.shape[1] % self.groups:
            raise ValueError(f"LocalResponseNorm: {x.shape[1]} channels do not split into {self.groups} groups")
        compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        # Autocast would run the window GEMM in bf16; meta tensors (FLOP counting) have no autocast.
        no_autocast = torch.autocast(x.device.type, enabled=False) if not x.is_meta else contextlib.nullcontext()
        with no_autocast:
            xc = x.to(compute_dtype)
            key = (x.shape[1], x.device, compute_dtype)
            if key not in self._bands:  # built once per channel count/device/dtype
                self._bands[key] = self.effective_alpha * _band(x.shape[1], self.size, self.groups, *key[1:])
            out = _LRNFunction.apply(xc, self._bands[key], self.beta, self.k)
        return out.to(x.dtype)

    def one_group(self) -> LocalResponseNorm:
        """The same normalization for the maps of one group alone: what each process of a tower pair runs."""
        return LocalResponseNorm(
            size=self.size, alpha=self.alpha, beta=self.beta, k=self.k, divide_alpha_by_size=self.divide_alpha_by_size
        )

    def extra_repr(self) -> str:
        extra = ", divide_alpha_by_size=True" if self.divide_alpha_by_size else ""
        extra += f", groups={self.groups}" if self.groups > 1 else ""
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}{extra}"
