"""Training-set statistics for mean subtraction and PCA lighting (§2, §4.1).

    python -m alexnet.data.stats /datasets/ilsvrc2012            # writes <root>/stats.pt
    python -m alexnet.data.stats /datasets/ilsvrc2012 --max-images 100000 --out imagenet-stats.pt

Then point the data config at the file: ``data.stats=/path/to/stats.pt``.
Every statistic is taken over the 256x256 images the model's crops come from,
at pixel scale [0, 1]: the per-channel mean, the per-pixel mean image, and the
eigenvalues/eigenvectors of the 3x3 covariance of RGB values over all pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

from alexnet.data.images import load_rgb
from alexnet.data.transforms import RESIZE, resize_and_centre_crop
from alexnet.errors import DataError, command


def compute_stats(
    root: str | Path, max_images: int | None = None, workers: int = 2, batch_size: int = 64
) -> dict[str, torch.Tensor | int]:
    """Mean (channel and pixel) and RGB eigen-decomposition of ``root/train``."""
    transform = v2.Compose(resize_and_centre_crop())
    train = Path(root) / "train"
    if not train.is_dir():
        raise DataError(f"{train} does not exist: the root must hold train/<class>/<image> (and val/)")
    try:
        dataset = datasets.ImageFolder(train, transform=transform, loader=load_rgb)
    except FileNotFoundError as error:  # no class folders, or none with images
        raise DataError(f"{train} has no usable class folders ({error}): expected train/<class>/<image>") from error
    if max_images is not None and max_images < len(dataset):
        # An evenly spaced subset covers every class (ImageFolder sorts by class).
        step = len(dataset) / max_images
        dataset = Subset(dataset, [int(i * step) for i in range(max_images)])
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    sums = RGBSums()
    for images, _ in loader:
        sums.add(images)
    if sums.count == 0:
        raise DataError(f"no training images under {train}")
    return sums.statistics()


class RGBSums:
    """Running float64 sums over uint8 (N, 3, 256, 256) images at scale [0, 1], from which the statistics follow.

    Sums, not means, so that parts (batches here, shards in :mod:`alexnet.data.prepare`) add up exactly.
    """

    def __init__(self) -> None:
        self.pixel_sum = torch.zeros(3, RESIZE, RESIZE, dtype=torch.float64)
        self.outer = torch.zeros(3, 3, dtype=torch.float64)
        self.count = 0

    def add(self, images: torch.Tensor) -> None:
        x = images.to(torch.float64) / 255.0
        self.pixel_sum += x.sum(0)
        flat = x.transpose(0, 1).reshape(3, -1)  # (3, all pixels)
        self.outer += flat @ flat.T
        self.count += x.shape[0]

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Tensors and an int: a file that ``torch.load(..., weights_only=True)`` reads back."""
        return {"pixel_sum": self.pixel_sum, "outer": self.outer, "count": self.count}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor | int]) -> RGBSums:
        sums = cls()
        sums.pixel_sum, sums.outer, sums.count = state["pixel_sum"], state["outer"], state["count"]
        return sums

    def __iadd__(self, other: RGBSums) -> RGBSums:
        self.pixel_sum += other.pixel_sum
        self.outer += other.outer
        self.count += other.count
        return self

    def statistics(self) -> dict[str, torch.Tensor | int]:
        """The mean (channel and pixel) and the eigen-decomposition of the RGB covariance over all pixels."""
        mean_image = self.pixel_sum / self.count
        mean = mean_image.mean((1, 2))
        covariance = self.outer / (self.count * RESIZE * RESIZE) - torch.outer(mean, mean)
        eigval, eigvec = torch.linalg.eigh(covariance)  # ascending; the paper's order is by size
        order = eigval.argsort(descending=True)
        return {
            "mean": mean.float(),
            "mean_image": mean_image.float(),
            "eigval": eigval[order].float(),
            "eigvec": eigvec[:, order].float(),  # columns are the eigenvectors
            "num_images": self.count,
        }


def load_stats(path: str | Path) -> dict[str, torch.Tensor | int]:
    """Read a file written by :func:`compute_stats`'s command, with a clear error if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"data.stats={path} does not exist. Compute it with `python -m alexnet.data.stats <data root>` "
            "or set data.stats=null to use the ImageNet values in the data config."
        )
    return torch.load(path, weights_only=True)


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="data root holding train/<class>/*")
    parser.add_argument("--out", type=Path, help="output file (default: <root>/stats.pt)")
    parser.add_argument("--max-images", type=int, help="use an evenly spaced subset of this size")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    stats = compute_stats(args.root, args.max_images, args.workers)
    out = args.out or args.root / "stats.pt"
    torch.save(stats, out)
    print(f"{stats['num_images']} images -> {out}")
    print(f"mean   {[round(v, 4) for v in stats['mean'].tolist()]}")
    print(f"eigval {[round(v, 4) for v in stats['eigval'].tolist()]}")
    print(f"eigvec {[[round(v, 4) for v in row] for row in stats['eigvec'].tolist()]}")


if __name__ == "__main__":
    main()
