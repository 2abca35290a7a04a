"""The two collectives the two-tower net needs, autograd-aware.

Where the paper's towers connect, each tower needs both towers' maps: an
all-gather along the channel dimension. Its backward pass depends on who uses
the gathered tensor:

- ``gather_towers``: each tower feeds the gathered maps to *its own* kernels
  (conv3, fc6, fc7, fc8), so the true gradient of a tower's maps is the *sum* of
  both towers' gradients of them: a reduce-scatter.
- ``gather_logits``: both towers compute the *same* loss from the gathered
  logits, so each tower's gradient is already complete: keep its own slice, no
  communication (summing would count the loss twice).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _split_sizes(total: int, parts: int) -> list[int]:
    """torch.chunk's sizes, which are DTensor's Shard sizes (the last parts may be smaller)."""
    step = -(-total // parts)
    return [max(0, min(step, total - i * step)) for i in range(parts)]


def _all_gather(x: Tensor, dim: int, group: dist.ProcessGroup, sizes: list[int]) -> Tensor:
    """Concatenate every rank's ``x`` along ``dim``; ranks may hold fewer entries (``sizes``)."""
    world = dist.get_world_size(group)
    x = x.movedim(dim, 0)
    pad = max(sizes) - x.shape[0]
    if pad:  # all_gather_into_tensor needs equal pieces
        x = torch.cat([x, x.new_zeros(pad, *x.shape[1:])])
    x = x.contiguous()
    out = x.new_empty(world * x.shape[0], *x.shape[1:])
    dist.all_gather_into_tensor(out, x, group=group)
    if len(set(sizes)) > 1:  # drop the padding
        out = torch.cat([piece[:size] for piece, size in zip(out.split(max(sizes)), sizes, strict=True)])
    return out.movedim(0, dim)


class _GatherTowers(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int, group: dist.ProcessGroup) -> Tensor:
        ctx.dim, ctx.group = dim, group
        # The caller's layout, so that layers (and dropout's mask order) see what one process would.
        channels_last = x.dim() == 4 and not x.is_contiguous()
        ctx.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        out = _all_gather(x, dim, group, [x.shape[dim]] * dist.get_world_size(group))
        return out.contiguous(memory_format=ctx.memory_format)

    @staticmethod
    def backward(ctx, grad: Tensor):
        world = dist.get_world_size(ctx.group)
        # (..., world * C, ...) -> (world * C', ...) with each rank's slice contiguous, then reduce-scatter (sum).
        pieces = grad.movedim(ctx.dim, 0).contiguous()
        out = pieces.new_empty(pieces.shape[0] // world, *pieces.shape[1:])
        dist.reduce_scatter_tensor(out, pieces, group=ctx.group)
        return out.movedim(0, ctx.dim).contiguous(memory_format=ctx.memory_format), None, None


class _GatherLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, total: int, group: dist.ProcessGroup) -> Tensor:
        sizes = _split_sizes(total, dist.get_world_size(group))
        rank = dist.get_rank(group)
        ctx.start, ctx.size = sum(sizes[:rank]), sizes[rank]
        return _all_gather(x, 1, group, sizes).contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad[:, ctx.start : ctx.start + ctx.size].contiguous(), None, None


def gather_towers(x: Tensor, group: dist.ProcessGroup, dim: int = 1) -> Tensor:
    """Both towers' maps (concatenated along ``dim``) for a layer that every tower feeds its own kernels."""
    return _GatherTowers.apply(x, dim, group)


def gather_logits(x: Tensor, num_classes: int, group: dist.ProcessGroup) -> Tensor:
    """All ``num_classes`` logits from each tower's share, for a loss computed identically by every tower."""
    return _GatherLogits.apply(x, num_classes, group)
