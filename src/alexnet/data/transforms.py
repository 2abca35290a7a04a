"""The paper's preprocessing and augmentation (§2, §4.1) as torchvision v2 transforms.

Order, per image: shorter side to 256 and centre 256x256 crop, float in [0, 1],
PCA lighting (training only), mean subtraction and scaling to the paper's pixel
range, then the 227x227 crop(s). The mean is subtracted at 256x256, before
cropping, so a per-pixel mean image lines up with the pixels it belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

# §4.1's ImageNet RGB statistics at pixel scale [0, 1] (alexnet-spec.md).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
CROP = 227  # the paper's "224" cannot give conv1 a 55x55 output; 227 does
RESIZE = 256


class PCALighting(nn.Module):
    """§4.1's colour augmentation: add ``eigvec @ (a * eigval)``, ``a ~ N(0, std)``, to every pixel.

    One RGB shift is drawn per image each time it is drawn, so it works as a
    per-sample transform inside a DataLoader worker. The eigen-decomposition is
    that of the 3x3 covariance of training-set RGB values at the same pixel
    scale as the input (``python -m alexnet.data.stats`` computes it).
    """

    def __init__(
        self,
        eigval: Sequence[float] = IMAGENET_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC,
        std: float = 0.1,
    ) -> None:
        super().__init__()
        self.register_buffer("eigval", torch.as_tensor(eigval, dtype=torch.float32))
        self.register_buffer("eigvec", torch.as_tensor(eigvec, dtype=torch.float32))
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError("PCALighting needs 3 eigenvalues and a 3x3 eigenvector matrix (columns)")
        self.std = std

    def shift(self) -> Tensor:
        """One random RGB offset, shape (3,)."""
        alpha = torch.randn(3) * self.std
        return self.eigvec @ (alpha * self.eigval)

    def forward(self, image: Tensor) -> Tensor:
        if self.std == 0:
            return image
        return image + self.shift().to(image.dtype)[:, None, None]


class SubtractMean(nn.Module):
    """Subtract the training-set mean (per channel ``(3,)`` or per pixel ``(3, H, W)``) and scale.

    ``input_scale=255`` gives the raw 0-255 pixel range the paper trained on, for which
    its init (std 0.01) and LRN constants (alpha 1e-4) were chosen; 1.0 keeps [0, 1].
    """

    def __init__(self, mean: Sequence[float] | Tensor, input_scale: float = 255.0) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        self.register_buffer("mean", mean[:, None, None] if mean.dim() == 1 else mean)
        self.input_scale = input_scale

    def forward(self, image: Tensor) -> Tensor:
        return (image - self.mean) * self.input_scale

    def extra_repr(self) -> str:
        per_channel = self.mean.numel() == 3
        mean = (
            [round(v, 4) for v in self.mean.flatten().tolist()]
            if per_channel
            else f"per pixel {tuple(self.mean.shape)}"
        )
        return f"mean={mean}, input_scale={self.input_scale}"


class StackCrops(nn.Module):
    """TenCrop's tuple of crops as one (10, C, H, W) tensor, so batches collate as (N, 10, C, H, W)."""

    def forward(self, crops: tuple[Tensor, ...]) -> Tensor:
        return torch.stack(crops)


def resize_and_centre_crop(size: int = RESIZE) -> list[nn.Module]:
    """§2: shorter side to ``size``, then the central ``size`` x ``size`` square (uint8 tensor).

    Resize is a no-op on images already ``size`` x ``size`` (the demo data), so it costs nothing there.
    """
    return [v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size)]


def train_transform(mean: SubtractMean, lighting: PCALighting | None) -> v2.Compose:
    """Random 227 crop and horizontal reflection of the 256x256 image, with PCA lighting."""
    steps = [*resize_and_centre_crop(), v2.ToDtype(torch.float32, scale=True)]
    if lighting is not None:
        steps.append(lighting)
    steps += [mean, v2.RandomCrop(CROP), v2.RandomHorizontalFlip()]
    return v2.Compose(steps)


def eval_transform(mean: SubtractMean, ten_crop: bool = False) -> v2.Compose:
    """The centre 227 crop, or with ``ten_crop`` §4.1's ten patches stacked as (10, 3, 227, 227).

    TenCrop's order is four corners, centre, then the same five of the flipped image,
    so index 4 is the single centre crop.
    """
    steps = [*resize_and_centre_crop(), v2.ToDtype(torch.float32, scale=True), mean]
    steps += [v2.TenCrop(CROP), StackCrops()] if ten_crop else [v2.CenterCrop(CROP)]
    return v2.Compose(steps)
