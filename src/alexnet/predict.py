"""What ``python predict.py`` does: the top-5 classes of any images, from a checkpoint alone.

The net, its input normalization and its class names come from the checkpoint
(:mod:`alexnet.checkpoint`); an image of any size and any format PIL reads is resized to
256x256 and cut to its centre 227x227 (§2), or to the paper's ten patches (§4.1), whose
softmax outputs are averaged as in evaluation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from alexnet.checkpoint import load_model, resolve_ckpt_path
from alexnet.data import eval_transform, load_rgb
from alexnet.errors import ConfigError, DataError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset(suffix.lower() for suffix in Image.registered_extensions())


def find_images(images: str | Path) -> list[Path]:
    """``images`` itself if it is a file, else every image file under the folder, sorted."""
    path = Path(images).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"images={images} does not exist: pass an image file or a folder of images")
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise DataError(f"images={images} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...)")
    return found


class ImageFiles(Dataset):
    """The model's input for each file: (3, 227, 227), or (10, 3, 227, 227) with ten patches."""

    def __init__(self, paths: list[Path], transform: Any) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_rgb(str(self.paths[index])))


@torch.inference_mode()
def predict(
    ckpt_path: str,
    images: str,
    log_dir: str = "logs",
    ten_crop: bool = False,
    top_k: int = 5,
    batch_size: int = 32,
    num_workers: int = 0,
    output: str | None = None,
) -> list[dict[str, Any]]:
    """The ``top_k`` classes of each image with their probabilities, best first; written to ``output`` (JSON) if given."""
    if top_k < 1 or batch_size < 1:
        raise ConfigError(f"predict.top_k={top_k} and predict.batch_size={batch_size} must be >= 1")
    model, info = load_model(resolve_ckpt_path(ckpt_path, log_dir))
    if info.normalization is None:
        raise ConfigError(f"{info.path} does not say how its run normalized pixels: predict with a newer checkpoint")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    classes = info.classes or [str(i) for i in range(model.num_classes)]
    names = info.class_names or classes
    paths = find_images(images)
    loader = DataLoader(
        ImageFiles(paths, eval_transform(info.normalization, ten_crop=ten_crop)),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    predictions: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc="predict", unit="batch", disable=len(loader) < 2):
        inputs = batch.to(device).flatten(0, 1) if ten_crop else batch.to(device)  # (N[*10], 3, 227, 227)
        probabilities = model(inputs).float().softmax(-1)  # (N[*10], classes)
        if ten_crop:
            probabilities = probabilities.view(batch.shape[0], 10, -1).mean(1)  # (N, classes)
        top = probabilities.topk(min(top_k, model.num_classes), dim=-1)
        for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            path = paths[len(predictions)]
            best = [
                {"class": classes[i], "name": names[i], "probability": p} for p, i in zip(values, indices, strict=True)
            ]
            predictions.append({"image": str(path), "top": best})
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(predictions, indent=2) + "\n")
        log.info("Predictions for %d images written to %s", len(predictions), output)
    return predictions


def format_predictions(predictions: list[dict[str, Any]]) -> str:
    """One line per image: its file name and the classes, best first, with their probabilities."""
    lines = []
    for prediction in predictions:
        best = ", ".join(f"{c['name']} {c['probability']:.1%}" for c in prediction["top"])
        lines.append(f"{Path(prediction['image']).name}: {best}")
    return "\n".join(lines)
