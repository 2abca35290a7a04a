"""alexnet.data.prepare and data=prepared: shards, statistics, bad files, resume, and the same inputs as the raw folder."""

import importlib.util
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_ok, make_image_folder, run_cli
from PIL import Image

from alexnet.data import ImageFolderDataModule, PreparedDataModule
from alexnet.data.manifest import count_classes, read_manifest
from alexnet.data.prepare import prepare
from alexnet.data.stats import compute_stats
from alexnet.errors import DataError


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Full-size-like images (larger than 256, not square), with ILSVRC-2012's odd files and class words."""
    src = make_image_folder(tmp_path / "src", size=(300, 280), smooth=True, words=True)
    folder = src / "train" / "cat"
    Image.new("L", (400, 300), 128).save(folder / "gray.JPEG")
    Image.new("CMYK", (300, 400), (0, 255, 0, 0)).save(folder / "cmyk.JPEG")
    Image.new("RGB", (320, 300), (1, 2, 3)).save(folder / "png_inside.JPEG", format="PNG")
    good = src / "train" / "dog" / "dog_0.JPEG"
    (src / "train" / "dog" / "truncated.JPEG").write_bytes(good.read_bytes()[:300])
    return src


def test_prepare_writes_shards_statistics_and_classes_and_skips_bad_files(source, tmp_path, caplog):
    dst = prepare(source, tmp_path / "dst", workers=2, shard_size=4)
    manifest = read_manifest(dst)
    assert manifest["classes"] == ["cat", "dog", "fox"]
    assert manifest["class_names"] == ["felis catus", "canis familiaris", "vulpes vulpes"]
    assert manifest["images"] == {"train": 12 + 3, "val": 6} and manifest["shards"] == {"train": 4, "val": 2}
    assert [Path(p).name for p, _ in manifest["bad_images"]] == ["truncated.JPEG"]
    assert "skipped" in caplog.text and "truncated.JPEG" in caplog.text
    assert (
        not (tmp_path / "dst.partial").exists() and not list(dst.rglob("*.partial")) and not list(dst.rglob("*.pt"))[1:]
    )
    # Plain tar shards, WebDataset's naming; the index points at each JPEG's bytes.
    index = np.load(dst / "train" / "index.npy")
    with tarfile.open(dst / "train" / "000000.tar") as tar:
        names = tar.getnames()
        assert names[:2] == ["00000000.jpg", "00000000.cls"]
        first = tar.extractfile("00000000.jpg").read()
        assert tar.extractfile("00000000.cls").read() == b"0"
    _, offset, size, label = index[0]
    assert (dst / "train" / "000000.tar").read_bytes()[offset : offset + size] == first and label == 0
    with Image.open(io.BytesIO(first)) as image:
        assert image.size == (256, 256) and image.mode == "RGB"
    # The statistics are alexnet.data.stats's, over the good training images.
    (source / "train" / "dog" / "truncated.JPEG").unlink()
    stats, direct = torch.load(dst / "stats.pt", weights_only=True), compute_stats(source, workers=0)
    assert stats["num_images"] == direct["num_images"] == 15
    torch.testing.assert_close(stats["mean_image"], direct["mean_image"])
    torch.testing.assert_close(stats["eigval"], direct["eigval"], rtol=1e-4, atol=1e-6)
    assert count_classes(str(dst)) == count_classes(str(source)) == 3


def test_prepared_inputs_equal_the_raw_folders_within_jpeg_reencoding(source, tmp_path):
    (source / "train" / "dog" / "truncated.JPEG").unlink()
    dst = prepare(source, tmp_path / "dst", workers=1, shard_size=5)
    prepared = PreparedDataModule(str(dst), batch_size=20, num_workers=0)
    raw = ImageFolderDataModule(
        str(source), batch_size=20, num_workers=0, stats=str(dst / "stats.pt"), per_pixel_mean=True
    )
    for dm in (prepared, raw):
        dm.setup("fit")
    assert prepared.classes == raw.classes and prepared.class_names() == [
        "felis catus",
        "canis familiaris",
        "vulpes vulpes",
    ]
    for loader in ("val_dataloader", "test_dataloader"):  # centre crop, then the ten patches
        (a, labels_a), (b, labels_b) = (
            dm.on_after_batch_transfer(next(iter(getattr(dm, loader)())), 0) for dm in (prepared, raw)
        )
        assert torch.equal(labels_a, labels_b) and a.shape == b.shape, (loader, labels_a, labels_b, a.shape, b.shape)
        difference = (a - b).abs()  # raw pixel units (0-255): JPEG q95 re-encoding only
        assert difference.mean() < 1.5 and difference.max() < 40, (difference.mean(), difference.max())
        assert (b - b.mean()).abs().mean() > 10 * difference.mean()  # small next to the images' own variation


def test_decoding_on_the_device_gives_the_same_batches(source, tmp_path):
    (source / "train" / "dog" / "truncated.JPEG").unlink()
    dst = prepare(source, tmp_path / "dst", workers=1)
    in_workers = PreparedDataModule(str(dst), batch_size=4, num_workers=0)
    on_device = PreparedDataModule(str(dst), batch_size=4, num_workers=0, decode_on_device=True)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        batches = []
        for dm in (in_workers, on_device):
            dm.setup("fit")
            torch.manual_seed(3)  # the same shuffle and crops
            batches.append(dm.on_after_batch_transfer(next(iter(getattr(dm, loader)())), 0))
        assert "jpeg" in next(iter(on_device.val_dataloader()))[0]  # really the bytes went to the "device"
        torch.testing.assert_close(batches[0], batches[1], rtol=0, atol=0)


def test_an_interrupted_preparation_resumes_and_keeps_finished_shards(source, tmp_path):
    (source / "train" / "dog" / "truncated.JPEG").unlink()
    blocker = source / "val" / "fox" / "zz_blocks.JPEG"
    os.mkfifo(blocker)  # reading it waits forever: the run is stuck in val/ when we kill it
    dst = tmp_path / "dst"
    command = [
        sys.executable,
        "-m",
        "alexnet.data.prepare",
        str(source),
        str(dst),
        "--workers",
        "1",
        "--shard-size",
        "4",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tmp_path / "dst.partial"
    deadline = time.monotonic() + 120
    while len(list(work.glob("train/*.pt"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(list(work.glob("train/*.pt"))) == 4, "the train shards did not finish"
    assert not dst.exists()  # nothing half-done appears under the name
    with pytest.raises(DataError, match=r"not finished.*again to finish it"):
        PreparedDataModule(str(dst)).setup("fit")
    finished = (work / "train" / "000000.tar").stat().st_mtime_ns
    blocker.unlink()
    Image.new("RGB", (300, 300), (9, 9, 9)).save(blocker)
    prepare(source, dst, workers=1, shard_size=4)
    assert (dst / "train" / "000000.tar").stat().st_mtime_ns == finished  # kept, not redone
    assert read_manifest(dst)["images"] == {"train": 15, "val": 7}


def test_a_truncated_shard_or_an_unprepared_root_is_named(source, tmp_path):
    with pytest.raises(DataError, match=r"not a prepared data set.*alexnet.data.prepare"):
        PreparedDataModule(str(source)).setup("fit")
    (source / "train" / "dog" / "truncated.JPEG").unlink()
    dst = prepare(source, tmp_path / "dst", workers=1, shard_size=4)
    shard = dst / "train" / "000001.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"000001\.tar is truncated"):
        PreparedDataModule(str(dst)).setup("fit")
    with pytest.raises(DataError, match="exists and is not a prepared data set"):
        prepare(source, tmp_path / "src", workers=1)


@pytest.mark.slow
def test_train_from_prepared_data_reads_the_class_count_from_it(tmp_path):
    src = make_image_folder(tmp_path / "src", classes=("a", "b", "c", "d"), size=(300, 260))
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.data.prepare", str(src), str(tmp_path / "prepared"), "--workers", "2"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert_ok(result)
    assert "16 training and 8 validation images, 4 classes, 0 skipped" in result.stdout
    overrides = [
        "data=prepared", f"data.root={tmp_path / 'prepared'}", "data.batch_size=4", "data.num_workers=1",
        "logger=csv", "trainer.max_epochs=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    ]  # fmt: skip
    result = run_cli("train.py", *overrides, cwd=tmp_path)
    assert_ok(result)
    assert "Test on" in result.stdout + result.stderr
    (hparams,) = tmp_path.glob("logs/train/runs/*/**/hparams.yaml")  # the resolved config
    assert "num_classes: 4" in hparams.read_text()
    evaluated = run_cli("eval.py", "ckpt_path=last", *overrides[:3], "trainer.limit_test_batches=1", cwd=tmp_path)
    assert_ok(evaluated)
    assert "per pixel (3, 256, 256)" in evaluated.stdout + evaluated.stderr  # the prepared data's mean image


def test_the_shards_decode_to_the_same_pixels_as_with_torchvisions_decoder(source, tmp_path):
    """TorchCodec (where installed) replaced torchvision.io's deprecated decoder: the same pixels, image by image."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    from alexnet.data.jpeg import DECODER, decode_rgb, decode_rgb_batch
    from alexnet.data.prepared import PreparedImages

    dst = prepare(source, tmp_path / "dst", workers=1, shard_size=4)
    images = PreparedImages(dst / "train", read_manifest(dst)["classes"])
    jpegs = [images.jpeg(i) for i in range(len(images))]
    assert len(jpegs) >= 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the decoder being replaced, as the reference
        before = [decode_jpeg(j, mode=ImageReadMode.RGB) for j in jpegs]
    batch = decode_rgb_batch(jpegs, "cpu")
    for j, reference, batched in zip(jpegs, before, batch, strict=True):
        assert torch.equal(decode_rgb(j), reference) and torch.equal(batched, reference)
    assert ("torchcodec" if importlib.util.find_spec("torchcodec") else "torchvision") == DECODER
