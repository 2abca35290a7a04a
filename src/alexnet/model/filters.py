"""conv1's kernels as pictures, one grid per tower: the paper's Figure 3, drawn every epoch and from a checkpoint."""

from __future__ import annotations

import torch
from torchvision.utils import make_grid


def conv1_grids(weight: torch.Tensor, towers: int, upscale: int = 4) -> list[torch.Tensor]:
    """One (3, H, W) image grid per tower of conv1's kernels, as in the paper's Figure 3.

    Each kernel is stretched to [0, 1] on its own, so the colour and frequency
    selectivity of every filter is visible whatever its scale.
    """
    w = weight.detach().float().cpu()
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - low) / (high - low).clamp_min(1e-12)
    w = w.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3)
    per_tower = w.shape[0] // towers
    return [make_grid(t, nrow=16, padding=2, pad_value=1.0) for t in w.split(per_tower)]
