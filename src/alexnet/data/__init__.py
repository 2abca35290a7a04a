"""Data: the ImageFolder pipeline of §2/§4.1, prepared shards, the demo data, CIFAR-10, statistics and ImageNet helpers.

The names below load on first use (PEP 562), so that importing one light module of the package
(``alexnet.data.manifest`` for a resolver, ``alexnet.data.resumable``) does not load every data module,
and ``python -m alexnet.data.stats`` does not find its own module imported already. The configs'
``_target_: alexnet.data.ShapesDataModule`` and ``from alexnet.data import ...`` work as for any package.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CIFAR10DataModule": "alexnet.data.cifar",
    "ImageFolderDataModule": "alexnet.data.folder",
    "PreparedDataModule": "alexnet.data.prepared",
    "ShapesDataModule": "alexnet.data.shapes",
    "load_rgb": "alexnet.data.images",
    "BatchTransform": "alexnet.data.transforms",
    "PCALighting": "alexnet.data.transforms",
    "SubtractMean": "alexnet.data.transforms",
    "eval_transform": "alexnet.data.transforms",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alexnet.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
