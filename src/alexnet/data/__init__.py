"""Data: the ImageFolder pipeline of §2/§4.1, its statistics, ImageNet helpers and the demo data."""

from alexnet.data.datamodule import ImageFolderDataModule, ShapesDataModule
from alexnet.data.images import DataError, load_rgb
from alexnet.data.transforms import PCALighting, SubtractMean, eval_transform, train_transform

__all__ = [
    "DataError",
    "ImageFolderDataModule",
    "PCALighting",
    "ShapesDataModule",
    "SubtractMean",
    "eval_transform",
    "load_rgb",
    "train_transform",
]
