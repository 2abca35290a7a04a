"""The paper's preprocessing and augmentation (§2, §4.1), split where it runs fastest.

Per image, in a DataLoader worker, on uint8 pixels (cheap, and 4x fewer bytes to move):
shorter side to 256 and the centre 256x256 (done once by ``alexnet.data.prepare``, or
here from a raw JPEG), then for training the random 227x227 crop and horizontal
reflection, and the draw of the PCA lighting coefficients. Per batch, on the device the
model runs on (:class:`BatchTransform`, from the data module's ``on_after_batch_transfer``):
float conversion to [0, 1], PCA lighting, mean subtraction (a per-pixel mean image cut at
each image's crop and reflected with it) and scaling to the paper's pixel range, and for
the test the ten patches. Lighting adds one RGB offset per image and the mean is aligned
with the crop, so this is the same arithmetic as cropping after normalizing the 256x256
image, which is how the paper describes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from alexnet.data.jpeg import decode_rgb_batch

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


def resize_and_centre_crop(size: int = RESIZE) -> list[nn.Module]:
    """§2: shorter side to ``size``, then the central ``size`` x ``size`` square (uint8 tensor).

    Resize is a no-op on images already ``size`` x ``size`` (the demo data, prepared data).
    """
    return [v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size)]


class RandomCropFlip(nn.Module):
    """Training's per-image draws on a uint8 (3, 256, 256) image: lighting coefficients, crop and flip.

    Returns ``{"image": (3, 227, 227) uint8, "crop": (top, left, flipped), "lighting": a}`` with
    ``a ~ N(0, lighting_std)`` per eigenvector; :class:`BatchTransform` applies ``a`` and the mean
    on the device. The draws come from the worker's torch generator, which Lightning seeds per
    worker and data-parallel replica, so a run (and its resume) augments reproducibly.
    With ``image=False`` the crop is only drawn, for images decoded later on the device.
    """

    def __init__(self, lighting_std: float = 0.1, size: int = CROP, image: bool = True) -> None:
        super().__init__()
        self.lighting_std, self.size, self.image = lighting_std, size, image

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        lighting = torch.randn(3) * self.lighting_std
        height, width = image.shape[-2:]
        top = int(torch.randint(0, height - self.size + 1, ()))
        left = int(torch.randint(0, width - self.size + 1, ()))
        flipped = bool(torch.rand(()) < 0.5)
        sample = {"crop": torch.tensor([top, left, int(flipped)]), "lighting": lighting}
        if self.image:
            patch = image[..., top : top + self.size, left : left + self.size]
            sample["image"] = patch.flip(-1) if flipped else patch.contiguous()
        return sample


class CentreCrop(nn.Module):
    """Validation: the centre 227x227 of the uint8 256x256 image, ``{"image", "crop"}``."""

    def __init__(self, size: int = CROP, image: bool = True) -> None:
        super().__init__()
        self.size, self.image = size, image

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        height, width = image.shape[-2:]
        top, left = (height - self.size) // 2, (width - self.size) // 2
        sample = {"crop": torch.tensor([top, left, 0])}
        if self.image:
            sample["image"] = image[..., top : top + self.size, left : left + self.size]
        return sample


class TenPatches(nn.Module):
    """The test: the whole uint8 256x256 image, marked for §4.1's ten patches (cut on the device)."""

    def __init__(self, image: bool = True) -> None:
        super().__init__()
        self.image = image

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        sample = {"crop": torch.zeros(3, dtype=torch.int64), "patches": torch.tensor(True)}
        if self.image:
            sample["image"] = image
        return sample


def crop_batch(images: Tensor, crop: Tensor, size: int) -> Tensor:
    """Each image's ``size`` x ``size`` patch at its (top, left), reflected where flagged: (N, C, size, size).

    ``images`` is (N, C, H, W), or (C, H, W) for one image (the mean image) cut N times.
    One gather for the whole batch, on any device, with no host synchronisation.
    """
    steps = torch.arange(size, device=crop.device)
    rows = crop[:, 0, None] + steps  # (N, size)
    cols = crop[:, 1, None] + steps
    cols = torch.where(crop[:, 2, None].bool(), cols.flip(-1), cols)  # reflected: read right to left
    if images.dim() == 3:
        return images[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # (C, N, s, s) -> (N, C, s, s)
    batch = torch.arange(images.shape[0], device=crop.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class SubtractMean(nn.Module):
    """Subtract the training-set mean (per channel ``(3,)`` or per pixel ``(3, H, W)``) and scale.

    ``input_scale=255`` gives the raw 0-255 pixel range the paper trained on, for which
    its init (std 0.01) and LRN constants (alpha 1e-4) were chosen; 1.0 keeps [0, 1].
    Checkpoints store it (:mod:`alexnet.checkpoint`): it is how pixels reach the model.
    """

    def __init__(self, mean: Sequence[float] | Tensor, input_scale: float = 255.0) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        self.register_buffer("mean", mean[:, None, None] if mean.dim() == 1 else mean)
        self.input_scale = input_scale
        # from_uint8's operands, made once: the mean at the input's scale, and mirrored for reflected patches
        self.register_buffer("_scaled_mean", self.mean * input_scale, persistent=False)
        self.register_buffer("_mirrored_mean", self._scaled_mean.flip(-1), persistent=False)

    @property
    def per_pixel(self) -> bool:
        return self.mean.shape[-2:] != (1, 1)

    def forward(self, image: Tensor, crop: Tensor | None = None) -> Tensor:
        """``image`` in [0, 1]; ``crop`` (N, 3) says where each of a batch was cut from the per-pixel mean."""
        mean = self.mean
        if self.per_pixel and crop is not None and image.shape[-2:] != mean.shape[-2:]:
            mean = crop_batch(mean, crop, image.shape[-1])
        return (image - mean) * self.input_scale

    def from_uint8(self, images: Tensor, crop: Tensor, shift: Tensor | None = None) -> Tensor:
        """``forward`` of ``images / 255 + shift`` for a uint8 batch on a CPU: (N, 3, h, w) float32, image by image.

        Each image's patch of the per-pixel mean is a slice of it (of the mirrored mean where the image was
        reflected), not a gather, and each image's pixels are read once and written in three passes in cache:
        ~0.1 ms an image on one core where the gather and whole-batch passes took ~1.2 ms (benchmarks/bench.py).
        ``shift``: (N, 3) colour offsets (:meth:`PCALighting.shift`) at pixel scale [0, 1].
        """
        scale, mean, mirrored = self.input_scale, self._scaled_mean, self._mirrored_mean
        height, width = images.shape[-2:]
        cut = self.per_pixel and mean.shape[-2:] != (height, width)
        offsets = (shift * scale)[:, :, None, None] if shift is not None else torch.zeros(len(images), 3, 1, 1)
        if not self.per_pixel:
            offsets, mean = offsets - mean, None  # a per-channel mean is one more offset
        out = torch.empty(images.shape, dtype=torch.float32)
        for i, (top, left, flipped) in enumerate(crop.tolist()):
            pixels = out[i].copy_(images[i])
            torch.add(offsets[i], pixels, alpha=scale / 255, out=pixels)  # x * scale / 255 + shift * scale
            if mean is None:
                continue
            if not cut:
                pixels.sub_(mean)
            elif flipped:  # the reflected patch of the mean is a patch of the mirrored mean
                right = mean.shape[-1] - left
                pixels.sub_(mirrored[:, top : top + height, right - width : right])
            else:
                pixels.sub_(mean[:, top : top + height, left : left + width])
        return out

    def extra_repr(self) -> str:
        mean = (
            f"per pixel {tuple(self.mean.shape)}"
            if self.per_pixel
            else [round(v, 4) for v in self.mean.flatten().tolist()]
        )
        return f"mean={mean}, input_scale={self.input_scale}"


class PCALighting(nn.Module):
    """§4.1's colour augmentation: add ``eigvec @ (a * eigval)`` to every pixel of an image.

    ``a ~ N(0, std)`` is drawn per image each time it is drawn (:class:`RandomCropFlip` draws it
    in the worker). The eigen-decomposition is that of the 3x3 covariance of training-set RGB
    values at pixel scale [0, 1] (``python -m alexnet.data.stats`` or ``alexnet.data.prepare``).
    """

    def __init__(
        self,
        eigval: Sequence[float] = IMAGENET_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC,
    ) -> None:
        super().__init__()
        self.register_buffer("eigval", torch.as_tensor(eigval, dtype=torch.float32))
        self.register_buffer("eigvec", torch.as_tensor(eigvec, dtype=torch.float32))
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError("PCALighting needs 3 eigenvalues and a 3x3 eigenvector matrix (columns)")

    def shift(self, coefficients: Tensor) -> Tensor:
        """(N, 3) coefficients ``a`` -> (N, 3) RGB offsets ``eigvec @ (a * eigval)``."""
        return (coefficients * self.eigval) @ self.eigvec.T

    def forward(self, images: Tensor, coefficients: Tensor) -> Tensor:
        return images + self.shift(coefficients)[:, :, None, None]


class BatchTransform(nn.Module):
    """The float half of the pipeline, on a collated batch wherever it is: lighting, mean, scale, patches.

    Takes the workers' ``{"image": uint8 (N, 3, h, w), "crop": (N, 3), "lighting": (N, 3)}``
    (``lighting`` in training only) and returns float32 (N, 3, h, w); a test batch (its
    ``"patches"`` key) gives §4.1's (N, 10, 3, 227, 227) from the 256x256 images: four
    corners, centre, then the same five reflected, so index 4 is the centre crop.
    ``{"jpeg": [bytes, ...]}`` instead of ``"image"`` decodes on this device first
    (nvJPEG on CUDA) and crops there.
    """

    def __init__(self, normalization: SubtractMean, lighting: PCALighting | None = None) -> None:
        super().__init__()
        self.normalization, self.lighting = normalization, lighting

    def forward(self, batch: dict[str, Tensor | list[Tensor]]) -> Tensor:
        crop, ten_patches = batch["crop"], "patches" in batch
        self.to(crop.device)  # the statistics follow the batch (a no-op once there)
        if "jpeg" in batch:
            images = decode_batch(batch["jpeg"], crop.device)  # (N, 3, 256, 256)
            if not ten_patches:
                images = crop_batch(images, crop, CROP)
        else:
            images = batch["image"]
        lit = self.lighting is not None and "lighting" in batch
        if images.device.type == "cpu" and not ten_patches:
            shift = self.lighting.shift(batch["lighting"]) if lit else None
            return self.normalization.from_uint8(images, crop, shift)
        x = images.float().div_(255)  # [0, 1], the scale of the statistics
        if lit:
            x = self.lighting(x, batch["lighting"])
        x = self.normalization(x, crop)
        if ten_patches:  # (N, 3, 256, 256) -> ten (N, 3, 227, 227) -> (N, 10, 3, 227, 227)
            x = torch.stack(TF.ten_crop(x, [CROP, CROP]), dim=1)
        return x


def decode_batch(jpegs: list[Tensor], device: torch.device) -> Tensor:
    """Decode a batch of JPEG byte tensors as RGB on ``device`` (batched nvJPEG on CUDA): (N, 3, H, W)."""
    return torch.stack(decode_rgb_batch(jpegs, device))


class _OneImage(nn.Module):
    """:class:`BatchTransform` on one sample, without a DataLoader: a batch of one, unwrapped."""

    def __init__(self, transform: BatchTransform) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, sample: dict[str, Tensor]) -> Tensor:
        return self.transform({key: value[None] for key, value in sample.items()})[0]


def eval_transform(normalization: SubtractMean, ten_crop: bool = False) -> v2.Compose:
    """One image (PIL or uint8 tensor, any size) -> the model's input, as in evaluation.

    (3, 227, 227): §2's 256x256 and its centre crop; with ``ten_crop`` §4.1's (10, 3, 227, 227).
    ``normalization`` is usually a checkpoint's (:attr:`alexnet.checkpoint.CheckpointInfo.normalization`).
    """
    cut = TenPatches() if ten_crop else CentreCrop()
    return v2.Compose([*resize_and_centre_crop(), cut, _OneImage(BatchTransform(normalization))])
