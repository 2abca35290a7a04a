import csv
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from alexnet.training.config import register_resolvers

register_resolvers()  # what the root scripts do before Hydra composes: the tests compose configs in-process too

ROOT = Path(__file__).resolve().parents[1]
CLASS_WORDS = {"cat": "felis catus", "dog": "canis familiaris", "fox": "vulpes vulpes"}  # synset_words.txt
# Small, fast, offline runs of train.py/eval.py for the CLI tests: a tiny demo data set,
TINY_DATA = ["data.train_per_class=4", "data.val_per_class=2", "data.batch_size=4", "data.num_workers=0"]
# one batch of each stage (no logging or checkpoints: Lightning's fast_dev_run),
FAST = [*TINY_DATA, "trainer.fast_dev_run=true"]
# or a real run of a few batches per epoch.
SHORT = [
    *TINY_DATA,
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "callbacks.throughput.window_size=2",
]


def make_image_folder(
    root: Path, classes=tuple(CLASS_WORDS), train=4, val=2, size=(64, 48), smooth: bool = False, words: bool = False
) -> Path:
    """root/{train,val}/<class>/*.JPEG of random RGB noise with a class-dependent tint.

    ``smooth``: noise at 1/16 of the size, enlarged, which JPEG keeps about as well as a photo.
    ``words``: also ``synset_words.txt``, the classes as words (:data:`CLASS_WORDS`).
    """
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                pixels[..., c % 3] = 255
                image = Image.fromarray(pixels)
                if smooth:
                    image = image.resize((size[0] // 16, size[1] // 16)).resize(size, Image.BICUBIC)
                image.save(folder / f"{name}_{i}.JPEG")
    if words:
        (root / "synset_words.txt").write_text("".join(f"{c} {CLASS_WORDS[c]}\n" for c in classes))
    return root


def pytest_collection_modifyitems(config, items):
    """Tests marked cuda need a GPU: on a machine without one they are reported as skipped, not run."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: benchmarks/gpu_check.sh runs it on a GPU machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "folder")


def run_cli(script: str, *overrides: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run train.py/eval.py as a user would, from ``cwd`` (where data/ and logs/ go)."""
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    environment.pop("WANDB_API_KEY", None)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=cwd,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )


def run_module(module: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m <module> args`` (alexnet.results.report, .figures, .dashboard) as run_cli runs the scripts: W&B offline."""
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT / "src")}
    environment.pop("WANDB_API_KEY", None)
    command = [sys.executable, "-m", module, *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=900)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    """The command succeeded; otherwise show the end of its output."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def read_metrics(run: Path) -> list[dict]:
    """The rows of a run's metrics.csv (CSVLogger)."""
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: a W&B server that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # free again once the socket is closed


def fit_briefly(module, data, root: Path, steps: int):
    """A few training steps on the CPU, nothing logged or checkpointed: a module with real weights to save."""
    import lightning as L

    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return trainer


MODEL = {"num_classes": 3, "lrn_style": "caffe", "dropout": 0.3, "init": "kaiming"}  # not all defaults


@dataclass(frozen=True)
class TrainedRun:
    """A checkpoint of a real (two-step) fit, and what made it."""

    checkpoint: Path  # <root>/logs/train/runs/x/checkpoints/last.ckpt, weights only (no optimizer state)
    module: Any
    data: Any
    folder: Path  # the image folder it trained on, with class words


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedRun:
    """Two SGD steps of the net :data:`MODEL` on a tiny image folder with class words, raw 0-255 pixels."""
    from functools import partial

    import torch

    from alexnet.data import ImageFolderDataModule
    from alexnet.model import AlexNet
    from alexnet.training.module import AlexNetModule

    root = tmp_path_factory.mktemp("trained")
    folder = make_image_folder(root / "folder", size=(300, 260), words=True)
    data = ImageFolderDataModule(str(folder), batch_size=3, num_workers=0, input_scale=255.0, verify=False)
    module = AlexNetModule(AlexNet(**MODEL), optimizer=partial(torch.optim.SGD, lr=1e-3), channels_last=False)
    trainer = fit_briefly(module, data, root, steps=2)
    path = root / "logs/train/runs/x/checkpoints/last.ckpt"
    path.parent.mkdir(parents=True)
    trainer.save_checkpoint(path, weights_only=True)
    return TrainedRun(path, module, data, folder)
