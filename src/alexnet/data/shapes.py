"""The bundled demo data: ten classes of solid shapes, generated on first use.

Why shapes: nothing can be downloaded, and the default run must show the
paper's full model learning on a 2-core CPU in minutes. Each image is one
shape on a plain background with a random colour pair of high luminance
contrast, a random size, position and rotation, written as a 256x256 JPEG in
ImageFolder layout, so the demo exercises exactly the code path ImageNet uses.
Generation is deterministic: image ``i`` of class ``c`` in split ``s`` always
comes from the same seed, whatever the number of processes that draw it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from alexnet import run_folder
from alexnet.data.folder import ImageFolderDataModule
from alexnet.data.stats import compute_stats
from alexnet.errors import DataError

SIZE = 256
VERSION = 1  # bump when the drawing changes, so old folders are regenerated
MARKER = "shapes.json"

Points = list[tuple[float, float]]


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> Points:
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]


def _star() -> Points:
    outer, inner = _regular(5), _regular(5, 0.42, -math.pi / 2 + math.pi / 5)
    return [p for pair in zip(outer, inner, strict=True) for p in pair]


def _heart() -> Points:
    t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return [(float(a) / 17, -float(b) / 17 + 0.1) for a, b in zip(x, y, strict=True)]


_CROSS = [(-0.33, -1), (0.33, -1), (0.33, -0.33), (1, -0.33), (1, 0.33), (0.33, 0.33), (0.33, 1),
          (-0.33, 1), (-0.33, 0.33), (-1, 0.33), (-1, -0.33), (-0.33, -0.33)]  # fmt: skip
_ARROW = [(-1, -0.25), (0.15, -0.25), (0.15, -0.7), (1, 0), (0.15, 0.7), (0.15, 0.25), (-1, 0.25)]
_HOURGLASS = [(-0.8, -1), (0.8, -1), (0, 0), (0.8, 1), (-0.8, 1), (0, 0)]


@dataclass(frozen=True)
class Disc:
    """A disc, its centre shifted by ``offset`` (a fraction of the radius) along the rotation."""

    offset: float = 0.0


# class name -> list of (polygon or Disc, radius factor, filled with foreground?)
CLASSES: dict[str, list[tuple[Points | Disc, float, bool]]] = {
    "arrow": [(_ARROW, 1.0, True)],
    "circle": [(Disc(), 0.85, True)],
    "crescent": [(Disc(), 0.9, True), (Disc(offset=0.45), 0.75, False)],
    "cross": [(_CROSS, 1.0, True)],
    "heart": [(_heart(), 1.0, True)],
    "hourglass": [(_HOURGLASS, 1.0, True)],
    "ring": [(Disc(), 0.9, True), (Disc(), 0.5, False)],
    "square": [(_regular(4, phase=math.pi / 4), 1.0, True)],
    "star": [(_star(), 1.1, True)],
    "triangle": [(_regular(3), 1.05, True)],
}


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A random foreground/background pair at least 0.4 apart in luminance."""
    while True:
        fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        if abs(_luminance(fg) - _luminance(bg)) >= 0.4:
            return tuple(int(v * 255) for v in fg), tuple(int(v * 255) for v in bg)


def draw(label: str, rng: np.random.Generator) -> Image.Image:
    """One 256x256 RGB image of the shape ``label`` drawn with randomness from ``rng``."""
    fg, bg = _colours(rng)
    image = Image.new("RGB", (SIZE, SIZE), bg)
    canvas = ImageDraw.Draw(image)
    radius = rng.uniform(0.24, 0.38) * SIZE
    cx, cy = SIZE / 2 + rng.uniform(-0.08, 0.08, 2) * SIZE
    angle = rng.uniform(0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    for part, factor, filled in CLASSES[label]:
        colour = fg if filled else bg
        r = radius * factor
        if isinstance(part, Disc):
            x, y = cx + part.offset * radius * cos, cy + part.offset * radius * sin
            canvas.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            points = [(cx + r * (px * cos - py * sin), cy + r * (px * sin + py * cos)) for px, py in part]
            canvas.polygon(points, fill=colour)
    return image


def _write_one(job: tuple[str, int, int, str, int]) -> None:
    split, class_idx, index, out_dir, seed = job
    label = sorted(CLASSES)[class_idx]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, class_idx, index])
    draw(label, rng).save(Path(out_dir) / split / label / f"{label}_{index:05d}.jpg", quality=92)


def generate(
    root: str | os.PathLike,
    train_per_class: int = 600,
    val_per_class: int = 50,
    seed: int = 2012,
    workers: int | None = None,
) -> Path:
    """Write the demo data set to ``root`` unless an identical one is already there.

    The folder is written under a temporary name and renamed when complete, so
    an interrupted run never leaves a half-written data set that looks whole.
    """
    root = Path(root)
    spec = {"version": VERSION, "train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}
    marker = root / MARKER
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return root
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise DataError(
            f"{root} exists and is not a generated shapes data set; move it away or set data.root elsewhere"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    jobs = []
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for class_idx, label in enumerate(sorted(CLASSES)):
            (tmp / split / label).mkdir(parents=True)
            jobs += [(split, class_idx, i, str(tmp), seed) for i in range(count)]
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=64))
    else:
        for job in jobs:
            _write_one(job)
    (tmp / MARKER).write_text(json.dumps(spec, indent=2) + "\n")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root


class ShapesDataModule(ImageFolderDataModule):
    """The demo data: generated into ``root`` on first use (see :mod:`alexnet.data.shapes`)."""

    def __init__(
        self, root: str, train_per_class: int = 600, val_per_class: int = 50, seed: int = 2012, **kwargs
    ) -> None:
        if kwargs.get("stats") is None:
            kwargs["stats"] = str(Path(root) / "stats.pt")  # computed from the generated images
        super().__init__(root, **kwargs)
        self.generation = {"train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}

    def prepare_data(self) -> None:
        generate(self.root, **self.generation)
        stats = Path(self.stats)
        if not stats.exists():
            with torch.random.fork_rng(devices=[]):  # a first run must train like any later one
                computed = compute_stats(self.root, workers=self.num_workers)
            run_folder.atomic_write(stats, lambda file: torch.save(computed, file))

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # a no-op when the data and its stats are there; needed outside a Trainer
        super().setup(stage)
