"""One LightningDataModule for every data set in ImageFolder layout, ImageNet and the demo alike.

    root/train/<class>/*.JPEG
    root/val/<class>/*.JPEG

Bad input is caught in ``setup`` before the first step: a missing root, a split
without class folders, train and val with different classes, and (with
``verify``) any file that does not decode, each named with its fix. Grayscale,
CMYK and PNG-in-JPEG files, all present in ILSVRC-2012, are decoded by content
and converted to RGB.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision import datasets
from torchvision.transforms import v2

from alexnet.data.images import find_bad_images, load_rgb
from alexnet.data.resumable import EpochSampler, ReplicaBatches, WorkerRandomState
from alexnet.data.stats import load_stats
from alexnet.data.transforms import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    IMAGENET_MEAN,
    RESIZE,
    BatchTransform,
    CentreCrop,
    PCALighting,
    RandomCropFlip,
    SubtractMean,
    TenPatches,
    resize_and_centre_crop,
)
from alexnet.errors import ConfigError, DataError

log = logging.getLogger(__name__)
LAYOUT = "root/train/<class>/<image> and root/val/<class>/<image>"


def synset_words(root: str | Path) -> dict[str, str] | None:
    """Class folder name -> words, from ``LOC_synset_mapping.txt`` or ``synset_words.txt`` if present."""
    for name in ("LOC_synset_mapping.txt", "synset_words.txt", "classnames.txt"):
        path = Path(root) / name
        if path.is_file():
            pairs = (line.strip().split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())
            return {p[0]: (p[1] if len(p) > 1 else p[0]) for p in pairs}
    return None


def collate(samples: list[tuple[dict[str, Any], int]]) -> tuple[dict[str, Any], Any]:
    """Stack the workers' samples; JPEG bytes (of different lengths) stay a list, decoded on the device."""
    if not isinstance(samples[0][0], dict) or "jpeg" not in samples[0][0]:
        return default_collate(samples)
    jpegs = [inputs.pop("jpeg") for inputs, _ in samples]
    inputs, labels = default_collate(samples)
    inputs["jpeg"] = jpegs
    return inputs, labels


class ImageFolderDataModule(ReplicaBatches, L.LightningDataModule):
    """The paper's data pipeline over an ImageFolder tree.

    Args:
        root: folder holding ``train/`` and ``val/``.
        batch_size: the global batch (the paper: 128), split evenly over the data-parallel
            replicas: 64 per device with ``trainer=ddp`` on 2 devices. The two processes of a
            ``trainer=towers`` pair are one replica, so they each read the whole 128.
        batch_size_per_device: read ``batch_size`` per replica instead (the global batch grows
            with the number of devices; scale the learning rate yourself).
        num_workers: DataLoader worker processes per device.
        stats: file from ``python -m alexnet.data.stats``; its mean and eigen-decomposition
            replace ``mean``, ``eigval`` and ``eigvec``.
        mean, eigval, eigvec: RGB statistics at pixel scale [0, 1] (defaults: ImageNet).
        per_pixel_mean: subtract the mean image (needs ``stats``) instead of the channel mean.
        lighting_std: std of PCA lighting's coefficients (§4.1: 0.1); 0 disables it.
        input_scale: 255 feeds the model raw-range pixels as the paper did; 1 keeps [0, 1].
        verify: decode every image once in ``setup`` and stop with a list of bad files.
        normalization: the model's input normalization to use instead of the one ``stats``,
            ``mean`` and ``input_scale`` give: a checkpoint's, so that eval.py feeds its model the
            pixels it was trained on (:attr:`alexnet.checkpoint.CheckpointInfo.normalization`).
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 128,
        num_workers: int = 4,
        stats: str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        eigval: Sequence[float] = IMAGENET_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC,
        per_pixel_mean: bool = False,
        lighting_std: float = 0.1,
        input_scale: float = 255.0,
        verify: bool = True,
        pin_memory: bool = True,
        batch_size_per_device: bool = False,
        normalization: SubtractMean | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} is not valid; it must be >= 1")
        if lighting_std < 0:
            raise ConfigError(f"data.lighting_std={lighting_std} is not valid; it must be >= 0")
        self.root = Path(root).expanduser()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.stats, self.mean, self.eigval, self.eigvec = stats, mean, eigval, eigvec
        self.per_pixel_mean, self.lighting_std, self.input_scale = per_pixel_mean, lighting_std, input_scale
        self.verify, self.pin_memory = verify, pin_memory
        self.batch_size_per_device = batch_size_per_device
        self.normalization = normalization  # from the arguments above in setup() when not given
        self.batch_transform: BatchTransform | None = None  # the float half, on the device (setup)
        self.train_set: datasets.ImageFolder | None = None
        self.val_set: datasets.ImageFolder | None = None
        self.test_set: datasets.ImageFolder | None = None
        # The training order's seed, from the run's seed; kept in checkpoints (state_dict) for resuming.
        self.shuffle_seed: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle_seed": self.shuffle_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shuffle_seed = state.get("shuffle_seed")

    @property
    def classes(self) -> list[str]:
        """Class folder names, in label order (known after ``setup``)."""
        return self.dataset("val").classes if self.val_set is None else self.val_set.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_names(self) -> list[str]:
        """Classes as words where the root has a synset-to-name file, else folder names."""
        words = synset_words(self.root) or {}
        return [words.get(c, c) for c in self.classes]

    def images(self, split: str, transform: Callable | None = None) -> Dataset:
        """A split's ``(transform(image), label)`` pairs, the image as loaded (PIL): for figures and features."""
        return self.dataset(split, transform)

    def dataset(self, split: str, transform: Callable | None = None) -> Dataset:
        folder = self.root / split
        if not self.root.is_dir():
            raise DataError(
                f"data.root={self.root} does not exist. Point data.root at a folder laid out as {LAYOUT} "
                "(for ILSVRC-2012, sort the flat val/ folder first: python -m alexnet.data.imagenet_val --help)."
            )
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: data.root must hold {LAYOUT}.")
        try:
            # Decoding a large JPEG at a reduced scale first costs a few percent of a full decode.
            return datasets.ImageFolder(folder, transform=transform, loader=partial(load_rgb, draft=RESIZE))
        except FileNotFoundError as error:  # no class folders, or class folders without images
            raise DataError(f"{folder} has no usable class folders ({error}); expected {LAYOUT}.") from error

    def _statistics(self) -> tuple[SubtractMean, PCALighting | None]:
        mean, eigval, eigvec = self.mean, self.eigval, self.eigvec
        if self.stats is not None:
            stats = load_stats(self.stats)
            mean = stats["mean_image"] if self.per_pixel_mean else stats["mean"]
            eigval, eigvec = stats["eigval"], stats["eigvec"]
        elif self.per_pixel_mean:
            raise ConfigError("data.per_pixel_mean=true needs data.stats (python -m alexnet.data.stats)")
        lighting = PCALighting(eigval, eigvec) if self.lighting_std > 0 else None
        return SubtractMean(mean, self.input_scale), lighting

    crops_in_workers = True  # False: workers draw the crops, the device decodes and cuts (PreparedDataModule)

    def resize_transforms(self) -> list[v2.Transform]:
        """What turns a loaded image into the uint8 256x256 tensor the crops come from."""
        return resize_and_centre_crop()

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is not None:
            return
        mean, lighting = self._statistics()
        if self.normalization is None:
            self.normalization = mean
        self.batch_transform = BatchTransform(self.normalization, lighting)
        to_256, image = self.resize_transforms(), self.crops_in_workers
        self.train_set = self.dataset("train", v2.Compose([*to_256, RandomCropFlip(self.lighting_std, image=image)]))
        self.val_set = self.dataset("val", v2.Compose([*to_256, CentreCrop(image=image)]))
        self.test_set = copy.copy(self.val_set)  # the same images, listed once (50,000 on ImageNet)
        self.test_set.transform = v2.Compose([*to_256, TenPatches(image=image)])
        if self.train_set.classes != self.val_set.classes:
            only_train = sorted(set(self.train_set.classes) - set(self.val_set.classes))[:5]
            only_val = sorted(set(self.val_set.classes) - set(self.train_set.classes))[:5]
            raise DataError(
                f"train/ and val/ under {self.root} have different classes (only in train: {only_train}, "
                f"only in val: {only_val}). Both splits need the same class folders."
            )
        if self.verify:
            self.verify_images()

    def check_classes(self, num_classes: int, classes: list[str] | None = None) -> None:
        """The model's classes must be this data's (count, and label order where known) before any step is taken."""
        if num_classes != self.num_classes:
            raise DataError(
                f"the model has {num_classes} classes but {self.root} has {self.num_classes}: use the data the "
                f"model is for, or train a model for this data with model.num_classes={self.num_classes}"
            )
        if classes is not None and list(classes) != self.classes:
            wrong = next(i for i, (a, b) in enumerate(zip(classes, self.classes, strict=True)) if a != b)
            raise DataError(
                f"the model's label {wrong} is class {classes[wrong]!r} but in {self.root} it is "
                f"{self.classes[wrong]!r}: the model was trained on other classes; use its data"
            )

    def verify_images(self) -> None:
        paths = [p for split in (self.train_set, self.val_set) for p, _ in split.samples]
        log.info("Checking that all %d images decode (data.verify=false skips this)", len(paths))
        with torch.random.fork_rng(devices=[]):  # its DataLoader must not shift the training RNG
            bad = find_bad_images(paths, self.num_workers)
        if bad:
            listing = "\n".join(f"  {p}: {r}" for p, r in bad[:20])
            more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
            raise DataError(
                f"{len(bad)} image(s) under {self.root} cannot be decoded:\n{listing}{more}\n"
                "Replace them with good copies or delete them, then run again."
            )

    def _loader(self, dataset: Dataset, batch_size: int) -> DataLoader:
        """The validation and test loader; ``generator``: its workers' seeds leave the global RNG alone."""
        _, replica = self._replicas()
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            generator=torch.Generator(),
            worker_init_fn=partial(pl_worker_init_function, rank=replica),
        )

    def train_dataloader(self) -> StatefulDataLoader:
        """Resumable mid-epoch (:mod:`alexnet.data.resumable`): Lightning saves its state in each checkpoint."""
        replicas, replica = self._replicas()
        if self.shuffle_seed is None:  # a new run (a resumed one has it from its checkpoint): the same on all ranks
            seed = int(torch.randint(0, 2**31, ()))
            self.shuffle_seed = self.trainer.strategy.broadcast(seed) if self.trainer is not None else seed
        sampler = EpochSampler(self.train_set, self.shuffle_seed, num_replicas=replicas, rank=replica)
        if self.trainer is not None:  # the epoch about to run; Lightning sets it only after the first batches are read
            # Lightning has no public count of the epochs started (current_epoch counts those completed);
            # the kill-and-resume tests (tests/training/test_failures.py) fail if this moves.
            sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        with warnings.catch_warnings():  # torchdata 0.11's constructor calls torch's deprecated set_vital
            warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)
            return StatefulDataLoader(
                WorkerRandomState(self.train_set),
                batch_size=self.device_batch_size,
                sampler=sampler,
                generator=sampler.generator,
                drop_last=True,
                num_workers=self.num_workers,
                collate_fn=collate,
                pin_memory=self.pin_memory and torch.cuda.is_available(),
                # Fresh workers each epoch, seeded by (seed, epoch): an epoch-boundary resume starts them alike.
                persistent_workers=False,
                # Lightning's worker seeding, by replica rather than by process: both towers of a
                # replica must augment their (shared) images identically.
                worker_init_fn=partial(pl_worker_init_function, rank=replica),
            )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        inputs, labels = batch
        jpegs = inputs.pop("jpeg", None) if isinstance(inputs, dict) else None
        inputs, labels = super().transfer_batch_to_device((inputs, labels), device, dataloader_idx)
        if jpegs is not None:  # the decoder reads host memory; it writes to the device
            inputs["jpeg"] = jpegs
        return inputs, labels

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The workers' uint8 images become the model's float input here, on the model's device."""
        inputs, labels = batch
        if not isinstance(inputs, dict):  # a dataset of float images already
            return batch
        return self.batch_transform(inputs), labels

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, batch_size=self.device_batch_size)

    def test_dataloader(self) -> DataLoader:
        # Ten patches per image: keep the number of crops per batch near the training batch.
        return self._loader(self.test_set, batch_size=max(1, self.device_batch_size // 10))
