"""Reading images from disk: decode any file by its content into RGB, and find the files that do not decode.

Grayscale, CMYK and PNG-in-JPEG files, all present in ILSVRC-2012, are decoded by
content and converted to RGB; a file that cannot be decoded raises a
:class:`DataError` naming it and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from torch.utils.data import DataLoader, Dataset

from alexnet.errors import DataError


def load_rgb(path: str, draft: int | None = None) -> Image.Image:
    """Decode any image PIL can read by its content (not its extension) into RGB.

    ``draft``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (in the DCT, several times
    faster) as long as both sides stay >= ``draft``: what a resize to that size needs.
    """
    try:
        with Image.open(path) as image:
            if draft is not None:
                image.draft("RGB", (draft, draft))
            return image.convert("RGB")
    except Exception as error:
        raise DataError(
            f"cannot decode image {path}: {error}. Replace the file with a good copy or delete it "
            "(data.verify=true lists every such file before training starts)."
        ) from error


class _Probe(Dataset):
    """Decodes each file fully and reports why it failed (None: it decodes), for the verify pass."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str | None:
        try:
            load_rgb(self.paths[index])  # converting to RGB decodes every byte
        except DataError as error:
            return str(error.__cause__)
        return None


def find_bad_images(paths: Sequence[str], workers: int = 0) -> list[tuple[str, str]]:
    """(path, reason) for every file that fails to decode, checked in parallel."""
    loader = DataLoader(_Probe(paths), batch_size=64, num_workers=workers, collate_fn=list)
    reasons = [reason for batch in loader for reason in batch]
    return [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
