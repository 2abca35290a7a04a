"""ILSVRC-2012's val/ folder, sorted into class folders from the devkit ground truth.

The official val/ folder holds 50,000 files ``ILSVRC2012_val_00000001.JPEG`` ...
with no class folders. The ground truth is one label per line, in file order,
either as the devkit's ILSVRC2012_IDs (1..1000, then ``--meta`` maps them to
WordNet IDs) or directly as WordNet IDs (``n01751748``)::

    python -m alexnet.data.imagenet_val /datasets/ilsvrc2012/val \\
        --labels ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt \\
        --meta ILSVRC2012_devkit_t12/data/meta.mat

Files are moved (``--copy`` to copy) into ``val/<wnid>/``. Class names as words
come from ``LOC_synset_mapping.txt`` or ``synset_words.txt`` in the data root,
if present (see :func:`alexnet.data.folder.synset_words`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from alexnet.errors import DataError, command


def read_labels(labels: Path, meta: Path | None = None) -> list[str]:
    """WordNet IDs in val file order, from a ground-truth file of IDs or of wnids."""
    if not labels.is_file():
        raise DataError(f"--labels {labels} does not exist: pass the devkit's ILSVRC2012_validation_ground_truth.txt")
    entries = [line.strip() for line in labels.read_text().splitlines() if line.strip()]
    if all(e.startswith("n") and e[1:].isdigit() for e in entries):
        return entries
    if not all(e.isdigit() for e in entries):
        raise DataError(f"{labels}: expected one ILSVRC2012_ID (1-1000) or one wnid per line")
    if meta is None or not meta.is_file():
        raise DataError(f"{labels} holds ILSVRC2012_IDs; pass --meta <devkit>/data/meta.mat to map them to wnids")
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    id_to_wnid = {int(s[0]): str(s[1]) for s in synsets if int(s[4]) == 0}  # leaves only: the 1000 classes
    return [id_to_wnid[int(e)] for e in entries]


def sort_val(val_dir: Path, labels: Path, meta: Path | None = None, copy: bool = False) -> int:
    """Move (or copy) each val image into ``val_dir/<wnid>/``; returns the number of files placed."""
    if not val_dir.is_dir():
        raise DataError(f"{val_dir} does not exist: pass the flat ILSVRC-2012 val/ folder")
    wnids = read_labels(labels, meta)
    files = sorted(p for p in val_dir.iterdir() if p.is_file() and p.suffix.upper() == ".JPEG")
    if len(files) != len(wnids):
        raise DataError(
            f"{val_dir} has {len(files)} JPEG files at its top level but {labels} has {len(wnids)} labels; "
            "run this on the flat, unsorted val/ folder"
        )
    for path, wnid in zip(files, wnids, strict=True):
        (val_dir / wnid).mkdir(exist_ok=True)
        (shutil.copy2 if copy else shutil.move)(path, val_dir / wnid / path.name)
    return len(files)


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val_dir", type=Path, help="the flat ILSVRC-2012 val/ folder")
    parser.add_argument("--labels", type=Path, required=True, help="ground truth, one label per line")
    parser.add_argument("--meta", type=Path, help="devkit meta.mat, when the labels are ILSVRC2012_IDs")
    parser.add_argument("--copy", action="store_true", help="copy instead of moving")
    args = parser.parse_args(argv)
    count = sort_val(args.val_dir, args.labels, args.meta, args.copy)
    print(f"sorted {count} images into class folders under {args.val_dir}")


if __name__ == "__main__":
    main()
