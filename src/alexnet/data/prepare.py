"""§2's preprocessing, done once: an ImageFolder tree -> 256x256 JPEG shards, statistics and class words.

    python -m alexnet.data.prepare /datasets/ilsvrc2012 /fast/ilsvrc2012-prepared --workers 16
    python train.py data=prepared data.root=/fast/ilsvrc2012-prepared

Every image is decoded once (a file that does not decode is listed, skipped and
reported), converted to RGB, its shorter side resized to 256 and its centre 256x256
kept, then re-encoded as JPEG at ``--quality`` (95, as cuda-convnet2's ImageNet batches).
A training image then costs a 256x256 decode instead of a full-size decode and resize:
several times cheaper per core.

Layout of DST, each split in shards of ``--shard-size`` images::

    prepared.json            classes, class words, counts, bad files, settings (written last)
    stats.pt                 mean, per-pixel mean image and RGB PCA of train/ (alexnet.data.stats's format)
    train/000000.tar ...     plain POSIX tar: <index>.jpg and <index>.cls (its label), WebDataset's naming
    train/index.npy          (images, 4) int64: shard, byte offset of the JPEG, its size, label
    val/...

Why tar and not litdata's chunks: a tar shard is read by any tool (tar, WebDataset), and
with the index each image is a slice of a memory-mapped file, so the data set stays a
map-style ``Dataset``: Lightning's samplers, both processes of a ``trainer=towers`` pair
reading the same batch, and exact resume from the global RNG work unchanged
(``benchmarks`` in the README compares the read rates).

Work happens in ``DST.partial/`` and finished shards are kept: an interrupted run continues
where it stopped when started again, and DST appears, complete, by one rename at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

from alexnet import run_folder
from alexnet.data.folder import synset_words
from alexnet.data.images import load_rgb
from alexnet.data.manifest import FORMAT, MANIFEST, read_manifest
from alexnet.data.stats import RGBSums
from alexnet.data.transforms import RESIZE, resize_and_centre_crop
from alexnet.errors import ConfigError, DataError, command

log = logging.getLogger(__name__)
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Shard:
    """One unit of work: these source images, in this order, into ``<split>/<number>.tar``."""

    split: str
    number: int
    first_index: int  # the index of its first image in the split (tar member names)
    samples: tuple[tuple[str, int], ...]
    folder: Path
    quality: int

    @property
    def tar(self) -> Path:
        return self.folder / self.split / f"{self.number:06d}.tar"

    @property
    def summary(self) -> Path:
        """Written after the tar: its presence marks the shard finished."""
        return self.tar.with_suffix(".pt")


def _summary_of(shard: Shard) -> dict[str, Any] | None:
    """A finished shard's summary, if it was made from the same source images."""
    if not (shard.summary.is_file() and shard.tar.is_file()):
        return None
    summary = torch.load(shard.summary, weights_only=True)
    return summary if summary["sources"] == [p for p, _ in shard.samples] else None


def prepare_shard(shard: Shard) -> dict[str, Any]:
    """Decode, check, resize, crop and re-encode one shard's images; sum their statistics (train only)."""
    if (done := _summary_of(shard)) is not None:
        return done  # resumed
    torch.set_num_threads(1)  # one shard per core
    to_256 = v2.Compose(resize_and_centre_crop())
    rows, bad = [], []
    sums = RGBSums()

    def write(file: IO[bytes]) -> None:  # the shard, whole or not at all
        with tarfile.open(fileobj=file, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for position, (path, label) in enumerate(shard.samples):
                try:
                    image = to_256(load_rgb(path, draft=RESIZE))  # (3, 256, 256) uint8
                except DataError as error:
                    bad.append((path, str(error.__cause__)))
                    continue
                encoded = io.BytesIO()
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(encoded, "JPEG", quality=shard.quality)
                name = f"{shard.first_index + position:08d}"
                member = tarfile.TarInfo(f"{name}.jpg")
                member.size, member.mtime = encoded.tell(), 0
                encoded.seek(0)
                tar.addfile(member, encoded)
                data_offset = tar.offset - -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE  # data is padded
                rows.append((shard.number, data_offset, member.size, label))
                label_member = tarfile.TarInfo(f"{name}.cls")
                label_member.size = len(text := str(label).encode())
                tar.addfile(label_member, io.BytesIO(text))
                if shard.split == "train":
                    sums.add(image[None])

    run_folder.atomic_write(shard.tar, write)
    summary = {
        "sources": [p for p, _ in shard.samples],
        "rows": torch.tensor(rows, dtype=torch.int64).view(-1, 4),
        "bad": bad,
        "sums": sums.state_dict(),
    }
    run_folder.atomic_write(shard.summary, lambda file: torch.save(summary, file))
    return summary


def _source_split(src: Path, split: str) -> datasets.ImageFolder:
    folder = src / split
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: SRC must hold train/<class>/<image> and val/<class>/<image>")
    return datasets.ImageFolder(folder, loader=str)  # paths and labels only


def prepare(
    src: str | Path, dst: str | Path, workers: int | None = None, quality: int = 95, shard_size: int = 1000
) -> Path:
    """Prepare ``src`` (ImageFolder layout) into ``dst``; returns ``dst``. Resumes an interrupted run."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise DataError(
            f"{src} does not exist: SRC must be a folder holding train/<class>/<image> and val/<class>/<image>"
        )
    if (dst / MANIFEST).is_file():
        log.info("%s is prepared already (%s): nothing to do", dst, MANIFEST)
        return dst
    if dst.exists():
        raise DataError(f"{dst} exists and is not a prepared data set: choose a new DST, or delete it")
    if not 1 <= quality <= 100:
        raise ConfigError(f"--quality {quality} is not a JPEG quality; use 1-100 (95: cuda-convnet2's)")
    work = dst.with_name(dst.name + ".partial")
    if (work / MANIFEST).is_file():  # stopped between writing its manifest and the rename
        work.rename(dst)
        return dst
    splits = {split: _source_split(src, split) for split in SPLITS}
    if splits["train"].classes != splits["val"].classes:
        raise DataError(f"train/ and val/ under {src} have different class folders; both need the same")
    shards: list[Shard] = []
    for split, folder in splits.items():
        (work / split).mkdir(parents=True, exist_ok=True)
        samples = folder.samples
        for number, first in enumerate(range(0, len(samples), shard_size)):
            chunk = tuple(samples[first : first + shard_size])
            shards.append(Shard(split, number, first, chunk, work, quality))
    resumed = sum(_summary_of(s) is not None for s in shards)
    workers = workers or os.cpu_count() or 1
    log.info(
        "Preparing %d images of %s in %d shards with %d processes into %s%s",
        sum(len(s.samples) for s in shards), src, len(shards), workers, work,
        f" ({resumed} shards done before)" if resumed else "",
    )  # fmt: skip
    summaries, sums = _run(shards, workers)
    bad = [entry for s in summaries.values() for entry in s["bad"]]
    for path, reason in bad:
        log.warning("skipped %s: it does not decode (%s)", path, reason)
    for split in SPLITS:
        rows = [summaries[s]["rows"] for s in shards if s.split == split]
        np.save(work / split / "index.npy", torch.cat(rows).numpy())
    if sums.count == 0:
        raise DataError("no training image could be decoded: nothing to prepare")
    stats = sums.statistics()
    torch.save(stats, work / "stats.pt")
    classes = splits["train"].classes
    words = synset_words(src) or {}
    manifest = {
        "format": FORMAT,
        "source": str(src),
        "quality": quality,
        "size": RESIZE,
        "classes": classes,
        "class_names": [words.get(c, c) for c in classes],
        "images": {split: sum(len(summaries[s]["rows"]) for s in shards if s.split == split) for split in SPLITS},
        "shards": {split: sum(s.split == split for s in shards) for split in SPLITS},
        "bad_images": [list(entry) for entry in bad],
    }
    run_folder.atomic_write(work / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    work.rename(dst)
    for s in shards:  # only now: until the rename, a rerun resumes from them
        dst.joinpath(s.summary.relative_to(work)).unlink()
    return dst


def _run(shards: list[Shard], workers: int) -> tuple[dict[Shard, dict[str, Any]], RGBSums]:
    """Each shard's summary (its index rows and bad files) and the training images' sums, added up as they come."""
    from tqdm import tqdm

    progress = tqdm(total=sum(len(s.samples) for s in shards), unit="img", smoothing=0.1)
    summaries = {}
    sums = RGBSums()
    if workers == 1:
        results = map(prepare_shard, shards)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(prepare_shard, shards)
    try:
        for shard, summary in zip(shards, results, strict=True):
            shard_sums = summary.pop("sums")  # 1.5 MB a shard: added up, not kept
            if shard.split == "train":
                sums += RGBSums.from_state_dict(shard_sums)
            summaries[shard] = summary
            progress.update(len(shard.samples))
    finally:
        progress.close()
        if workers != 1:
            pool.shutdown(cancel_futures=True)
    return summaries, sums


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="ImageFolder tree holding train/<class>/* and val/<class>/*")
    parser.add_argument("dst", type=Path, help="the prepared data set to write (must not exist, or be unfinished)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the 256x256 images (95)")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per shard (1000: ~35 MB)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    dst = prepare(args.src, args.dst, args.workers, args.quality, args.shard_size)
    manifest = read_manifest(dst)
    print(
        f"{dst}: {manifest['images']['train']} training and {manifest['images']['val']} validation images, "
        f"{len(manifest['classes'])} classes, {len(manifest['bad_images'])} skipped, "
        f"in {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
