"""What a data root holds, read cheaply: a prepared data set's manifest (``prepared.json``) and the class count.

Light on purpose: the Hydra resolver ``${num_classes_in:${data.root}}`` calls :func:`count_classes`
while the config is composed, before any data module exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchvision.datasets.folder import find_classes

from alexnet.errors import DataError

MANIFEST = "prepared.json"
FORMAT = "alexnet-prepared/1"


def read_manifest(root: str | Path) -> dict[str, Any]:
    """A prepared data set's ``prepared.json``, or a :class:`DataError` saying how to make or finish it."""
    root = Path(root).expanduser()
    path = root / MANIFEST
    if not path.is_file():
        unfinished = root.with_name(root.name + ".partial")
        if unfinished.is_dir():
            raise DataError(
                f"{root} is not finished: its preparation stopped in {unfinished}. Run the same "
                f"`python -m alexnet.data.prepare SRC {root}` again to finish it (done shards are kept)."
            )
        raise DataError(
            f"data.root={root} is not a prepared data set (no {MANIFEST}): make one with "
            f"`python -m alexnet.data.prepare SRC {root}`, or use data=imagenet for an ImageFolder tree"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path} is format {manifest.get('format')!r}, not {FORMAT!r}: prepare it again")
    return manifest


def count_classes(root: str) -> int:
    """The number of classes of the data at ``root``, prepared or ImageFolder (``${num_classes_in:...}``)."""
    root_path = Path(root).expanduser()
    if (root_path / MANIFEST).is_file() or not (root_path / "train").is_dir():
        return len(read_manifest(root_path)["classes"])
    return len(find_classes(root_path / "train")[0])
