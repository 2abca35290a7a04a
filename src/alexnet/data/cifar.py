"""CIFAR-10 (Krizhevsky, 2009) for the paper's two CIFAR-10 claims, read and augmented as cuda-convnet did.

The same 60,000 32x32 images in either of two layouts under ``data.root``:

    root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}   the official batches (torchvision's)
    root/train/<class>/<image>, root/test/<class>/<image>                   ImageFolder, PNG or JPEG

The whole set lives in memory as one uint8 tensor; a batch is gathered, cropped and flipped in one go
(``__getitems__``), with no per-image Python. As in cuda-convnet's CIFAR data providers (``convdata.py``):

- pixels stay 0-255 (``input_scale`` 255) less the training set's per-pixel mean image;
- ``crop=None`` (Figure 1's net): the whole image, no augmentation; ``crop=24`` (§3.3's net, its
  ``--crop-border=4``): training takes a random 24x24 patch, flipped with probability 1/2; validation the centre
  patch; the test averages the softmax of ten (four corners and the centre, and their reflections, its
  ``--multiview-test``). Every patch has the *centre* 24x24 of the mean image subtracted, as there.

``val_size`` training images (5,000 by default; cuda-convnet held out batch 5) are set aside for validation,
the same ones in every run (a fixed draw, not the run's seed), and the training mean is taken without them.
The test split is for the test alone; a copy without one (``../shared/data`` has the training split only)
tests on the held-out validation images instead, and says so.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from alexnet.data.images import load_rgb
from alexnet.data.resumable import EpochSampler, ReplicaBatches, WorkerRandomState
from alexnet.data.transforms import SubtractMean, crop_batch
from alexnet.errors import ConfigError, DataError

log = logging.getLogger(__name__)
BATCHES = "cifar-10-batches-py"
SIZE = 32
SPLIT_SEED = 0  # the held-out validation images: the same draw in every run
LAYOUT = f"root/{BATCHES}/ (the official python batches) or root/train/<class>/<image> and root/test/<class>/<image>"


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with open(path, "rb") as file:
            return pickle.load(file, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        raise DataError(f"cannot read {path} ({error}): replace {path.parent} with a good copy of {BATCHES}") from error


def read_batches(folder: Path, split: str) -> tuple[Tensor, Tensor, list[str]]:
    """One split of the official batches: uint8 images (N, 3, 32, 32), int64 labels, the class names."""
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        batch = _unpickle(folder / name)
        images.append(torch.from_numpy(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, SIZE, SIZE)))
        labels.append(torch.as_tensor(batch[b"labels"], dtype=torch.int64))
    classes = [name.decode() for name in _unpickle(folder / "batches.meta")[b"label_names"]]
    return torch.cat(images), torch.cat(labels), classes


def read_folder(folder: Path) -> tuple[Tensor, Tensor, list[str]]:
    """One split in ImageFolder layout (sorted class folders: CIFAR's label order), decoded into memory."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(path, label) for label, c in enumerate(classes) for path in sorted((folder / c).iterdir())
             if path.is_file()]  # fmt: skip
    if not files:
        raise DataError(f"{folder} has no class folders with images; expected {LAYOUT}")
    images = torch.empty(len(files), 3, SIZE, SIZE, dtype=torch.uint8)
    for i, (path, _) in enumerate(files):
        pixels = np.array(load_rgb(str(path)))
        if pixels.shape != (SIZE, SIZE, 3):
            raise DataError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, not a 32x32 CIFAR image")
        images[i] = torch.from_numpy(pixels).permute(2, 0, 1)
    return images, torch.as_tensor([label for _, label in files]), classes


def ten_views(images: Tensor, size: int) -> Tensor:
    """(N, 3, 32, 32) -> (N, 10, 3, size, size): four corners, centre, then the same five reflected (TenCrop's order)."""
    return torch.stack(TF.ten_crop(images, [size, size]), dim=1)


class _InMemory(WorkerRandomState):
    """A split's images as whole batches: ``__getitems__`` gathers, crops and flips a batch in one go.

    ``views``: "random" (a random patch, flipped half the time: training), "centre", "ten" or "whole".
    The draws come from the torch RNG of the process that reads (the main one: the module's checkpoint keeps it).
    """

    def __init__(self, images: Tensor, labels: Tensor, views: str, crop: int) -> None:
        self.images, self.labels, self.views, self.crop = images, labels, views, crop

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        inputs, labels = self.__getitems__([index])
        return {k: v[0] for k, v in inputs.items()}, labels[0]

    def __getitems__(self, indices: list[int]) -> tuple[dict[str, Tensor], Tensor]:
        index = torch.as_tensor(indices)
        images, labels, n = self.images[index], self.labels[index], len(indices)
        border = SIZE - self.crop
        if self.views == "random":
            crop = torch.stack(
                [torch.randint(0, border + 1, (n,)), torch.randint(0, border + 1, (n,)), torch.randint(0, 2, (n,))], 1
            )
            images = crop_batch(images, crop, self.crop)
        elif self.views == "centre":
            images = images[..., border // 2 : border // 2 + self.crop, border // 2 : border // 2 + self.crop]
        elif self.views == "ten":
            images = ten_views(images, self.crop)
        elif self.views == "one":  # the test of a net on whole images: one view
            images = images[:, None]
        return {"image": images.contiguous()}, labels


def _batch(samples: Any) -> Any:
    return samples  # __getitems__ made the batch


class CIFAR10DataModule(ReplicaBatches, L.LightningDataModule):
    """CIFAR-10 in memory, with cuda-convnet's preprocessing (see the module doc).

    Args:
        root: the folder holding ``cifar-10-batches-py/`` (or that folder itself), or ``train/`` and ``test/``.
        batch_size: the global batch (cuda-convnet: 128), split over data-parallel replicas.
        crop: None for whole 32x32 images without augmentation (Figure 1), or the patch size (24: §3.3's net).
        val_size: training images held out for validation (0: validate on the test split).
        test_split: "test", or "val" to test on the held-out images; None: "test" where the data has it.
        download: fetch the official batches into ``root`` through torchvision (needs the internet).
        input_scale: 255 keeps cuda-convnet's raw pixel range (less the mean); 1 for [0, 1].
        normalization: a checkpoint's mean and scale instead of this data's (evaluating a trained net).
        num_workers: loader processes; 0 (the default) reads in the training process, where a batch costs
            microseconds of gathering.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 128,
        crop: int | None = None,
        val_size: int = 5000,
        test_split: str | None = None,
        download: bool = False,
        input_scale: float = 255.0,
        normalization: SubtractMean | None = None,
        num_workers: int = 0,
        batch_size_per_device: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} is not valid; it must be >= 1")
        if crop is not None and not 0 < crop <= SIZE:
            raise ConfigError(f"data.crop={crop} is not valid; it must be null (whole images) or 1-{SIZE}")
        if test_split not in (None, "test", "val"):
            raise ConfigError(f"data.test_split={test_split!r} is not valid; allowed values: [null, 'test', 'val']")
        if val_size < 0:
            raise ConfigError(f"data.val_size={val_size} is not valid; it must be >= 0")
        self.root = Path(root).expanduser()
        self.batch_size, self.crop, self.val_size, self.test_split = batch_size, crop, val_size, test_split
        self.download, self.input_scale, self.normalization = download, input_scale, normalization
        self.num_workers, self.batch_size_per_device = num_workers, batch_size_per_device
        self.classes: list[str] = []
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.shuffle_seed: int | None = None  # the training order's seed, kept in checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle_seed": self.shuffle_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shuffle_seed = state.get("shuffle_seed")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_names(self) -> list[str]:
        return list(self.classes)

    def _batches_folder(self) -> Path | None:
        for folder in (self.root / BATCHES, self.root):
            if (folder / "data_batch_1").is_file():
                return folder
        return None

    def prepare_data(self) -> None:
        if self.download and self._batches_folder() is None:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(self.root), train=True, download=True)

    def _read(self, split: str) -> tuple[Tensor, Tensor, list[str]] | None:
        """A split as stored, or None where the data has no such split."""
        batches = self._batches_folder()
        if batches is not None:
            return read_batches(batches, split) if split == "train" or (batches / "test_batch").is_file() else None
        folder = self.root / split
        return read_folder(folder) if folder.is_dir() else None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if not self.root.is_dir():
            raise DataError(f"data.root={self.root} does not exist: point it at CIFAR-10 as {LAYOUT} "
                            "(data.download=true fetches the official batches where there is internet)")  # fmt: skip
        train = self._read("train")
        if train is None:
            raise DataError(f"{self.root} holds no CIFAR-10 training split: expected {LAYOUT}")
        images, labels, self.classes = train
        if self.val_size >= len(images):
            raise ConfigError(f"data.val_size={self.val_size} leaves no training images of {len(images)}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SPLIT_SEED))
        held_out, kept = order[: self.val_size].sort().values, order[self.val_size :].sort().values
        self.splits["train"] = (images[kept], labels[kept])
        test = self._read("test") if self.test_split != "val" else None
        if test is not None and test[2] != self.classes:
            raise DataError(f"the test and training splits under {self.root} have different classes")
        if self.val_size:
            self.splits["val"] = (images[held_out], labels[held_out])
        elif test is not None:
            self.splits["val"] = test[:2]
        else:
            raise ConfigError(f"data.val_size=0 and {self.root} has no test split: nothing to validate on")
        if test is None and self.test_split == "test":
            raise DataError(f"{self.root} has no test split (test_batch, or test/<class>/): "
                            "use data.test_split=val to test on the held-out validation images")  # fmt: skip
        if test is None:
            log.warning("%s has no test split: the test scores the %d held-out validation images", self.root,
                        len(self.splits["val"][0]))  # fmt: skip
        self.splits["test"] = test[:2] if test is not None else self.splits["val"]
        held_out_images = f"the {len(self.splits['val'][0])} held-out validation images"
        self.test_description = f"{self.root}: {'its test split' if test is not None else held_out_images}"
        if self.normalization is None:
            mean = self.splits["train"][0].float().mean(0).div_(255)  # (3, 32, 32) at [0, 1]
            if self.crop is not None:
                border = (SIZE - self.crop) // 2
                mean = mean[:, border : border + self.crop, border : border + self.crop]
            self.normalization = SubtractMean(mean, self.input_scale)
        log.info("CIFAR-10 from %s: %d training, %d validation and %d test images", self.root,
                 *(len(self.splits[s][0]) for s in ("train", "val", "test")))  # fmt: skip

    def check_classes(self, num_classes: int, classes: list[str] | None = None) -> None:
        if num_classes != self.num_classes:
            raise DataError(f"the model has {num_classes} classes but {self.root} has {self.num_classes}: "
                            f"use model.num_classes={self.num_classes}")  # fmt: skip
        if classes is not None and list(classes) != self.classes:
            raise DataError(f"the model was trained on the classes {classes}, not those of {self.root}")

    def _dataset(self, split: str) -> _InMemory:
        images, labels = self.splits[split]
        crop = self.crop or SIZE
        views = {"train": "random", "val": "centre", "test": "ten"}[split] if self.crop else (
            "one" if split == "test" else "whole")  # fmt: skip
        return _InMemory(images, labels, views, crop)

    def train_dataloader(self) -> DataLoader:
        """Resumable mid-epoch as the ImageFolder loader is (:mod:`alexnet.data.resumable`)."""
        from torchdata.stateful_dataloader import StatefulDataLoader

        replicas, replica = self._replicas()
        if self.shuffle_seed is None:
            seed = int(torch.randint(0, 2**31, ()))
            self.shuffle_seed = self.trainer.strategy.broadcast(seed) if self.trainer is not None else seed
        dataset = self._dataset("train")
        sampler = EpochSampler(dataset, self.shuffle_seed, num_replicas=replicas, rank=replica)
        if self.trainer is not None:  # see ImageFolderDataModule.train_dataloader
            sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        with warnings.catch_warnings():  # torchdata 0.11's constructor calls torch's deprecated set_vital
            warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)
            return StatefulDataLoader(
                dataset, batch_size=self.device_batch_size, sampler=sampler, generator=sampler.generator,
                drop_last=True, num_workers=self.num_workers, collate_fn=_batch, persistent_workers=False,
                worker_init_fn=partial(pl_worker_init_function, rank=replica),
            )  # fmt: skip

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        return DataLoader(self._dataset(split), batch_size=batch_size, num_workers=self.num_workers,
                          collate_fn=_batch, generator=torch.Generator())  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.device_batch_size)

    def test_dataloader(self) -> DataLoader:
        views = 10 if self.crop else 1
        return self._loader("test", max(1, self.device_batch_size // views))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 patches -> the model's float input, on its device: less the mean, at 0-255."""
        inputs, labels = batch
        self.normalization.to(labels.device)
        return self.normalization(inputs["image"].float().div_(255)), labels
