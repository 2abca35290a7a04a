"""Data: the ImageFolder pipeline of §2/§4.1, prepared shards, the demo data, statistics and ImageNet helpers."""

from alexnet.data.folder import ImageFolderDataModule
from alexnet.data.images import load_rgb
from alexnet.data.prepared import PreparedDataModule
from alexnet.data.shapes import ShapesDataModule
from alexnet.data.transforms import BatchTransform, PCALighting, SubtractMean, eval_transform

__all__ = [
    "BatchTransform",
    "ImageFolderDataModule",
    "PCALighting",
    "PreparedDataModule",
    "ShapesDataModule",
    "SubtractMean",
    "eval_transform",
    "load_rgb",
]
