"""A locally connected layer: a convolution whose kernels are not shared across positions (cuda-convnet's ``local``).

PyTorch has none. §3.3's CIFAR-10 net (cuda-convnet's ``layers-conv-local-11pct.cfg``) ends in two of them:
each output position has its own ``in_channels x k x k`` kernel per output map, and its own bias.

    out[n, o, y, x] = bias[o, y, x] + sum_{c, i, j} weight[y, x, o, c, i, j] * in[n, c, y*s - p + i, x*s - p + j]

Computed as one batched matrix product over the positions: ``unfold`` gathers each position's patch,
(L, N, C*k*k) @ (L, C*k*k, O) gives (L, N, O). On 6x6 positions that is 36 GEMMs of the batch,
which a CPU runs at full BLAS speed (``benchmarks/bench.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from alexnet.errors import ConfigError


class LocallyConnected2d(nn.Module):
    """Unshared convolution over a fixed input size: one kernel and one bias per output position.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as for ``nn.Conv2d`` (square kernels).
        input_size: the input's height and width (square); a locally connected layer has a kernel
            per output position, so its input size is part of the layer.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, input_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.output_size = (input_size + 2 * padding - kernel_size) // stride + 1
        if self.output_size < 1:
            raise ConfigError(f"LocallyConnected2d: a {kernel_size}x{kernel_size} kernel does not fit a "
                              f"{input_size}x{input_size} input with padding {padding}")  # fmt: skip
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.input_size, self.stride, self.padding = input_size, stride, padding
        positions = self.output_size**2
        # (positions, in_channels * k * k, out_channels): each position's kernels as the right factor of its GEMM.
        self.weight = nn.Parameter(torch.empty(positions, in_channels * kernel_size**2, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels, self.output_size, self.output_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ``nn.Conv2d``'s default (each position's fan-in); the nets set their own (cuda-convnet's ``initW``)."""
        bound = 1 / math.sqrt(self.in_channels * self.kernel_size**2)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if (c, h, w) != (self.in_channels, self.input_size, self.input_size):
            raise ValueError(f"LocallyConnected2d expects (N, {self.in_channels}, {self.input_size}, "
                             f"{self.input_size}) inputs, got {tuple(x.shape)}")  # fmt: skip
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (N, C*k*k, L)
        weight = self.weight.to(patches.dtype)  # under autocast, unfold keeps the input's dtype
        out = torch.bmm(patches.permute(2, 0, 1), weight)  # (L, N, C*k*k) @ (L, C*k*k, O) -> (L, N, O)
        out = out.permute(1, 2, 0).reshape(n, self.out_channels, self.output_size, self.output_size)
        return out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, input_size={self.input_size}")  # fmt: skip
