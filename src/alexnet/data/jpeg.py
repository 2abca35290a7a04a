"""JPEG bytes to RGB pixels: the prepared shards' images in the workers, and batches on the device (nvJPEG).

TorchCodec decodes them where it is installed (torchvision deprecates its decoders from 0.29 on, in favour
of TorchCodec's); torchvision's decoders otherwise, e.g. beside a torch that no TorchCodec build matches
(the GPU machine's 2.11 with torchvision 0.26, where they are not deprecated). Both run libjpeg-turbo on the
CPU and give the same pixels (tests/data/test_prepare.py). Grayscale and CMYK files come out as RGB; the
shards hold what preparation wrote (RGB, no EXIF), and original files go through PIL (:mod:`.images`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

try:
    from torchcodec.decoders import decode_jpeg as _torchcodec_decode_jpeg
except (ImportError, OSError, RuntimeError):  # not installed, or built for another torch
    _torchcodec_decode_jpeg = None

DECODER = "torchcodec" if _torchcodec_decode_jpeg is not None else "torchvision"


def decode_rgb(data: Tensor) -> Tensor:
    """One JPEG's bytes (a 1-D uint8 tensor) -> (3, H, W) uint8 RGB, on the CPU."""
    if _torchcodec_decode_jpeg is not None:
        return _torchcodec_decode_jpeg(data, mode="RGB")
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(data, mode=ImageReadMode.RGB)


_torchcodec_failed_on_cuda = False  # this TorchCodec build has no nvJPEG: torchvision's decodes on CUDA


def decode_rgb_batch(jpegs: Sequence[Tensor], device: torch.device | str) -> list[Tensor]:
    """JPEG byte tensors (on the CPU) -> (3, H, W) uint8 RGB images on ``device``: one nvJPEG call on CUDA.

    A TorchCodec built without CUDA fails on a GPU: torchvision's nvJPEG decodes then, from that batch on.
    """
    global _torchcodec_failed_on_cuda
    on_cuda = torch.device(device).type == "cuda"
    if _torchcodec_decode_jpeg is not None and not (on_cuda and _torchcodec_failed_on_cuda):
        try:
            return _torchcodec_decode_jpeg(list(jpegs), mode="RGB", device=device)
        except RuntimeError:
            if not on_cuda:
                raise
            _torchcodec_failed_on_cuda = True
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(list(jpegs), mode=ImageReadMode.RGB, device=device)
