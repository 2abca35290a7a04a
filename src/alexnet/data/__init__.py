"""Data: the ImageFolder pipeline of §2/§4.1, its statistics, ImageNet helpers and the demo data."""

from alexnet.data.datamodule import ImageFolderDataModule, PreparedDataModule, ShapesDataModule
from alexnet.data.images import load_rgb
from alexnet.data.transforms import BatchTransform, PCALighting, SubtractMean, eval_transform
from alexnet.errors import DataError

__all__ = [
    "BatchTransform",
    "DataError",
    "ImageFolderDataModule",
    "PCALighting",
    "PreparedDataModule",
    "ShapesDataModule",
    "SubtractMean",
    "eval_transform",
    "load_rgb",
]
