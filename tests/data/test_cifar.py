"""CIFAR-10 from the official python batches and from an ImageFolder: the same images, cuda-convnet's views."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_ok, read_metrics, run_cli
from PIL import Image

from alexnet import run_folder
from alexnet.checkpoint import load_model
from alexnet.data import CIFAR10DataModule
from alexnet.data.cifar import BATCHES, ten_views
from alexnet.errors import ConfigError, DataError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_BATCH = 20  # images in each of the five training batches and the test batch


def _images(count: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    labels = [i % 10 for i in range(count)]
    return rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), labels


def make_cifar_batches(root: Path) -> Path:
    """A tiny copy of cifar-10-batches-py, in its format: (N, 3072) uint8 rows of R, G and B planes."""
    folder = root / BATCHES
    folder.mkdir(parents=True)
    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        images, labels = _images(PER_BATCH, seed=i)
        batch = {b"data": images.reshape(PER_BATCH, -1), b"labels": labels, b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return root


def make_cifar_folder(root: Path, batches: Path) -> Path:
    """The same images as PNG files in ImageFolder layout, CIFAR's split names."""
    for split, names in (("train", [f"data_batch_{b}" for b in range(1, 6)]), ("test", ["test_batch"])):
        number = 0
        for name in names:
            batch = pickle.loads((batches / BATCHES / name).read_bytes(), encoding="bytes")
            for pixels, label in zip(batch[b"data"], batch[b"labels"], strict=True):
                folder = root / split / CLASSES[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.reshape(3, 32, 32).transpose(1, 2, 0)).save(folder / f"{number:05d}.png")
                number += 1
    return root


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return make_cifar_batches(tmp_path_factory.mktemp("cifar"))


def _data(root: Path, **kwargs) -> CIFAR10DataModule:
    data = CIFAR10DataModule(str(root), batch_size=8, val_size=10, **kwargs)
    data.setup("fit")
    return data


def _sorted(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keys = [(int(label), bytes(image.flatten()[:32].tolist())) for image, label in zip(images, labels, strict=True)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return images[order], labels[order]


def test_the_batches_and_an_image_folder_give_the_same_images(cifar, tmp_path):
    batches, folder = _data(cifar), _data(make_cifar_folder(tmp_path / "folder", cifar))
    assert batches.classes == folder.classes == CLASSES
    for one in (batches, folder):  # the same training images (which are held out follows their order on disk)
        one.splits["all"] = tuple(
            torch.cat([a, b]) for a, b in zip(one.splits["train"], one.splits["val"], strict=True)
        )
    for split in ("all", "test"):
        a, b = _sorted(*batches.splits[split]), _sorted(*folder.splits[split])
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), split


def test_validation_is_held_out_of_training_the_same_in_every_run(cifar):
    data = _data(cifar)
    train, val = data.splits["train"][0], data.splits["val"][0]
    assert len(train) == 5 * PER_BATCH - 10 and len(val) == 10 and len(data.splits["test"][0]) == PER_BATCH
    rows = {bytes(image.flatten().tolist()) for image in train}
    assert not any(bytes(image.flatten().tolist()) in rows for image in val)
    assert torch.equal(_data(cifar).splits["val"][0], val)  # a fixed draw, not the run's seed
    # the training mean, without the held-out images, at [0, 1]
    torch.testing.assert_close(data.normalization.mean, train.float().mean(0) / 255)


def test_whole_images_for_figure_1_and_cuda_convnets_patches_for_the_lrn_net(cifar):
    whole = _data(cifar)
    images, labels = next(iter(whole.train_dataloader()))
    assert images["image"].shape == (8, 3, 32, 32) and images["image"].dtype == torch.uint8
    x, _ = whole.on_after_batch_transfer((images, labels), 0)
    expected = images["image"].float() - whole.normalization.mean * 255  # raw 0-255, less the mean
    torch.testing.assert_close(x, expected, atol=1e-4, rtol=1e-5)
    test, _ = next(iter(whole.test_dataloader()))
    assert test["image"].shape == (8, 1, 3, 32, 32)  # one view

    cropped = _data(cifar, crop=24)
    assert cropped.normalization.mean.shape == (3, 24, 24)  # the centre of the mean image, for every patch
    torch.manual_seed(0)
    images, labels = next(iter(cropped.train_dataloader()))
    assert images["image"].shape == (8, 3, 24, 24)
    source = cropped.splits["train"][0]
    for patch in images["image"]:  # each a 24x24 window of a training image, reflected or not
        assert any(
            torch.equal(window, patch) or torch.equal(window.flip(-1), patch)
            for image in source for window in image.unfold(1, 24, 1).unfold(2, 24, 1).permute(1, 2, 0, 3, 4).flatten(0, 1)
        )  # fmt: skip
    val, _ = next(iter(cropped.val_dataloader()))
    torch.testing.assert_close(val["image"], cropped.splits["val"][0][:8, :, 4:28, 4:28])
    test, _ = next(iter(cropped.test_dataloader()))
    image = cropped.splits["test"][0][0]
    views = test["image"][0]
    assert views.shape == (10, 3, 24, 24)
    torch.testing.assert_close(views[4], image[:, 4:28, 4:28])  # the centre is view 4 (the module's CENTRE)
    # then the five of the reflected image: cuda-convnet's ten (each patch and its reflection) in another order
    torch.testing.assert_close(views[5], image[:, :24, 8:].flip(-1))
    torch.testing.assert_close(ten_views(image[None], 24)[0], views)


def test_a_copy_without_a_test_split_tests_on_the_held_out_images_and_says_so(cifar, tmp_path, caplog):
    folder = make_cifar_folder(tmp_path / "folder", cifar)
    for path in sorted((folder / "test").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (folder / "test").rmdir()
    data = _data(folder)
    assert data.splits["test"] is data.splits["val"]
    assert "no test split" in caplog.text
    n = len(data.splits["val"][0])
    assert data.test_description == f"{folder}: the {n} held-out validation images"  # train.py's "Test on ..."
    assert _data(cifar).test_description == f"{cifar}: its test split"
    with pytest.raises(DataError, match=r"data\.test_split=val"):
        _data(folder, test_split="test")


def test_bad_cifar_input_gets_one_line_naming_the_fix(tmp_path, cifar):
    with pytest.raises(DataError, match="does not exist"):
        _data(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CIFAR-10 training split"):
        _data(tmp_path / "empty")
    big = tmp_path / "big" / "train" / "cat"
    big.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(big / "0.png")
    with pytest.raises(DataError, match="not a 32x32 CIFAR image"):
        _data(tmp_path / "big")
    with pytest.raises(ConfigError, match=r"data\.crop=40"):
        CIFAR10DataModule(str(cifar), crop=40)
    with pytest.raises(ConfigError, match="leaves no training images"):
        CIFAR10DataModule(str(cifar), val_size=1000).setup("fit")


CIFAR_SHORT = [
    "logger=csv", "data.batch_size=8", "data.val_size=10", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1", "callbacks.throughput.window_size=2",
]  # fmt: skip


def test_the_figure_1_and_lrn_experiments_train_and_their_checkpoints_rebuild_the_nets(cifar, tmp_path):
    fig1 = run_cli("train.py", "experiment=cifar_fig1", f"data.root={cifar}", *CIFAR_SHORT, "trainer.max_epochs=2",
                   "lr.tanh=0.002", "model.activation=tanh", "hydra.run.dir=fig1", cwd=tmp_path)  # fmt: skip
    assert_ok(fig1)
    rows = read_metrics(tmp_path / "fig1")
    assert [int(r["epoch"]) for r in rows if r.get("train/top1_error_epoch")] == [0, 1]  # Figure 1's curve
    rates = next(r for r in rows if r.get("lr-SGD/conv1.weight"))
    assert float(rates["lr-SGD/conv1.weight"]) == 0.002 and float(rates["lr-SGD/conv1.bias"]) == 0.004
    model, info = load_model(tmp_path / "fig1/checkpoints/last.ckpt")
    assert info.model_name == "CifarConvNet" and info.model_kwargs["activation"] == "tanh"
    assert info.normalization.mean.shape == (3, 32, 32) and info.classes == CLASSES
    assert not (tmp_path / "fig1" / run_folder.RESULTS).read_text().count("test/")  # Figure 1 tests nothing
    # no checkpoint monitors the validation error: the run's result is still its lowest one
    val_errors = [float(r["val/top1_error"]) for r in rows if r.get("val/top1_error")]
    best = run_folder.read_results(tmp_path / "fig1")["best/val_top1_error"]
    assert len(val_errors) == 2 and best == pytest.approx(min(val_errors))

    lrn = run_cli("train.py", "experiment=cifar_ablate_lrn", f"data.root={cifar}", *CIFAR_SHORT, "trainer.max_epochs=1",
                  "hydra.run.dir=lrn", cwd=tmp_path)  # fmt: skip
    assert_ok(lrn)
    results = run_folder.read_results(tmp_path / "lrn")
    assert 0 <= results["test/ten_crop_top1_error"] <= 1 and "test/centre_crop_top1_error" in results
    model, info = load_model(next((tmp_path / "lrn/checkpoints").glob("epoch_*.ckpt")))
    assert info.model_name == "CifarLocalNet" and info.model_kwargs == {"num_classes": 10, "lrn": False}
    assert model(torch.zeros(1, 3, 24, 24)).shape == (1, 10)
    # resuming with the other net is refused, naming the difference
    other = run_cli("train.py", "experiment=cifar_lrn", f"data.root={cifar}", *CIFAR_SHORT, "trainer.max_epochs=2",
                    f"ckpt_path={tmp_path / 'lrn/checkpoints/last.ckpt'}", cwd=tmp_path)  # fmt: skip
    assert other.returncode != 0 and "model.lrn: False -> True" in other.stderr
