"""Reading a data set written by :mod:`alexnet.data.prepare`: each image a slice of a memory-mapped tar shard."""

from __future__ import annotations

import mmap
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from alexnet.data.folder import ImageFolderDataModule
from alexnet.data.jpeg import decode_rgb
from alexnet.data.manifest import read_manifest
from alexnet.data.transforms import RESIZE
from alexnet.errors import DataError

OPEN_SHARDS = 64  # per worker process, well below the usual limit of 1024 open files
# Stands in for an image that the device will decode: the crop needs only its size.
_UNDECODED = torch.empty(3, RESIZE, RESIZE, dtype=torch.uint8, device="meta")


class PreparedImages(Dataset):
    """One split of a prepared data set, map-style: ``(transform(uint8 (3, 256, 256)), label)``.

    With ``decode=False`` the JPEG bytes go to the batch as ``"jpeg"`` instead, for the device
    to decode (:class:`alexnet.data.transforms.BatchTransform`); ``transform`` then only draws the crop.
    Shards are opened lazily, once per worker process.
    """

    def __init__(
        self, folder: str | Path, classes: list[str], transform: Callable | None = None, decode: bool = True
    ) -> None:
        self.folder, self.classes, self.transform, self.decode = Path(folder), classes, transform, decode
        index = self.folder / "index.npy"
        if not index.is_file():
            raise DataError(f"{index} is missing: prepare the data set again (python -m alexnet.data.prepare)")
        self.index = np.load(index)  # (images, 4): shard, offset, size, label; one array, shared by forked workers
        self._shards: OrderedDict[int, mmap.mmap] = OrderedDict()  # the most recently read, open

    def __len__(self) -> int:
        return len(self.index)

    def shard_path(self, number: int) -> Path:
        return self.folder / f"{number:06d}.tar"

    def check_shards(self) -> None:
        """Every shard is there and long enough for its last image (a truncated copy fails here, not mid-epoch)."""
        shards = self.index[:, 0]
        ends = np.zeros(int(shards.max()) + 1 if len(shards) else 0, dtype=np.int64)
        np.maximum.at(ends, shards, self.index[:, 1] + self.index[:, 2])  # each shard's last byte in use
        for number in np.unique(shards):
            path, end = self.shard_path(int(number)), int(ends[number])
            size = path.stat().st_size if path.is_file() else -1
            if size < end:
                what = "is missing" if size < 0 else f"is truncated ({size} of at least {end} bytes)"
                raise DataError(f"{path} {what}: copy the prepared data set again, or prepare it again")

    def jpeg(self, i: int) -> Tensor:
        """Image ``i``'s JPEG bytes as a uint8 tensor."""
        shard, offset, size, _ = (int(v) for v in self.index[i])
        if shard not in self._shards:
            if len(self._shards) >= OPEN_SHARDS:  # each map holds a file descriptor; ImageNet has 1282 shards
                self._shards.popitem(last=False)[1].close()
            with open(self.shard_path(shard), "rb") as file:
                self._shards[shard] = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        self._shards.move_to_end(shard)
        return torch.from_numpy(np.frombuffer(self._shards[shard], np.uint8, count=size, offset=offset).copy())

    def __getitem__(self, i: int) -> tuple[Any, int]:
        data = self.jpeg(i)
        label = int(self.index[i, 3])
        if not self.decode:
            sample = self.transform(_UNDECODED)
            sample["jpeg"] = data
            return sample, label
        image = decode_rgb(data)
        return (self.transform(image) if self.transform else image), label

    def __getstate__(self) -> dict[str, Any]:  # memory maps stay in the process that opened them
        return {**self.__dict__, "_shards": OrderedDict()}


class PreparedDataModule(ImageFolderDataModule):
    """Data written once by ``python -m alexnet.data.prepare SRC DST``: 256x256 JPEG shards.

    Workers decode 256x256 JPEGs and cut the crops in uint8; the statistics (``DST/stats.pt``),
    classes and class words come with the data; every image was checked when it was prepared.

    Args:
        root: the prepared data set (DST).
        decode_on_device: send the JPEG bytes to the device and decode them there (batched
            nvJPEG on CUDA): for a GPU with few CPU cores per GPU. Workers then only read bytes.
        per_pixel_mean: §2's mean image, which preparation computes (default here: true).
        **kwargs: as :class:`ImageFolderDataModule`.
    """

    def __init__(self, root: str, decode_on_device: bool = False, per_pixel_mean: bool = True, **kwargs: Any) -> None:
        if kwargs.get("stats") is None:
            kwargs["stats"] = str(Path(root).expanduser() / "stats.pt")
        kwargs.setdefault("verify", False)
        super().__init__(root, per_pixel_mean=per_pixel_mean, **kwargs)
        self.decode_on_device = decode_on_device
        self.crops_in_workers = not decode_on_device
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = read_manifest(self.root)
        return self._manifest

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    def resize_transforms(self) -> list[v2.Transform]:
        return []  # prepared images are 256x256 already

    def setup(self, stage: str | None = None) -> None:
        read_manifest(self.root)  # an unprepared or unfinished root says so before its stats are looked for
        super().setup(stage)

    def images(self, split: str, transform: Callable | None = None) -> Dataset:
        """As the base class's, the images decoded here (uint8 (3, 256, 256)) even with ``decode_on_device``."""
        return PreparedImages(self.root / split, self.classes, transform)

    def dataset(self, split: str, transform: Callable | None = None) -> PreparedImages:
        images = PreparedImages(self.root / split, self.classes, transform, decode=not self.decode_on_device)
        images.check_shards()
        return images

    def verify_images(self) -> None:
        pass  # every image was decoded when the data set was prepared; bad ones are in prepared.json
