"""The checkpoint contract: what a run's checkpoint holds, rebuilding its net without Hydra, older checkpoints."""

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch

from alexnet.checkpoint import find_last, load_model, read_info, resolve_ckpt_path
from alexnet.data import ImageFolderDataModule
from alexnet.model import AlexNet
from alexnet.module import AlexNetModule

MODEL = {"num_classes": 3, "lrn_style": "caffe", "dropout": 0.3, "init": "kaiming"}  # not all defaults


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two SGD steps on a tiny image folder; the run's last checkpoint (weights only: no optimizer state)."""
    from conftest import make_image_folder

    root = tmp_path_factory.mktemp("checkpoint")
    data = ImageFolderDataModule(
        str(make_image_folder(root / "folder")), batch_size=4, num_workers=0, input_scale=255.0, verify=False
    )
    (root / "folder" / "synset_words.txt").write_text("cat felis catus\ndog canis familiaris\nfox vulpes\n")
    module = AlexNetModule(AlexNet(**MODEL), optimizer=partial(torch.optim.SGD, lr=1e-3), channels_last=False)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    path = root / "logs/train/runs/x/checkpoints/last.ckpt"
    path.parent.mkdir(parents=True)
    trainer.save_checkpoint(path, weights_only=True)
    return path, module, data


def test_the_checkpoint_holds_the_nets_arguments_its_normalization_and_classes(trained):
    path, _, data = trained
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["model_kwargs"] == AlexNet(**MODEL).model_kwargs
    torch.testing.assert_close(checkpoint["normalization"]["mean"], data.normalization.mean)
    assert checkpoint["normalization"]["input_scale"] == 255.0
    assert checkpoint["classes"] == ["cat", "dog", "fox"]
    assert checkpoint["class_names"] == ["felis catus", "canis familiaris", "vulpes"]
    assert "rng_states" in checkpoint


def test_load_model_rebuilds_the_trained_net_without_hydra(trained):
    path, module, data = trained
    model, info = load_model(path)
    assert isinstance(model, AlexNet) and not model.training
    assert info.model_kwargs["lrn_style"] == "caffe" and model.norm1.effective_alpha == pytest.approx(2e-5)
    for name, tensor in module.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, msg=name)
    images = torch.randn(2, 3, 227, 227)
    torch.testing.assert_close(model(images), module.model.eval()(images))
    normalize = info.normalization
    pixels = torch.rand(3, 256, 256)
    torch.testing.assert_close(normalize(pixels), data.normalization(pixels))  # the same pixels reach the model
    assert (info.classes, info.global_step) == (["cat", "dog", "fox"], 2)


def test_a_checkpoint_from_before_the_entries_loads_from_its_config(trained, tmp_path):
    """Checkpoints written before model_kwargs/normalization/classes existed carry the run config only."""
    path, module, _ = trained
    checkpoint = torch.load(path, weights_only=True)
    for key in ("model_kwargs", "normalization", "classes", "class_names"):
        del checkpoint[key]
    model_config = {"_target_": "alexnet.model.AlexNet", **AlexNet(**MODEL).model_kwargs}
    data_config = {"_target_": "alexnet.data.ImageFolderDataModule", "stats": None, "input_scale": 1.0}
    checkpoint["hyper_parameters"] = {"config": {"model": model_config, "data": data_config}}
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    model, info = load_model(old)
    assert info.model_kwargs == AlexNet(**MODEL).model_kwargs and info.classes is None
    assert info.normalization.input_scale == 1.0
    torch.testing.assert_close(info.normalization.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    images = torch.randn(2, 3, 227, 227)
    torch.testing.assert_close(model(images), module.model.eval()(images))
    # A stats file that is gone: the checkpoint cannot say, and eval.py falls back to the data config.
    checkpoint["hyper_parameters"]["config"]["data"]["stats"] = str(tmp_path / "gone.pt")
    torch.save(checkpoint, old)
    assert read_info(old).normalization is None
    # Not train.py's: said so, with what to pass instead.
    checkpoint["hyper_parameters"]["config"]["model"]["_target_"] = "torchvision.models.alexnet"
    torch.save(checkpoint, old)
    with pytest.raises(ValueError, match=r"not written by train.py.*logs/train"):
        load_model(old)


def test_last_is_the_newest_of_the_same_net_and_another_net_is_refused(trained):
    path, _, _ = trained
    log_dir = path.parents[4]  # <log_dir>/train/runs/x/checkpoints/last.ckpt
    same = AlexNet(**MODEL).model_kwargs
    assert find_last(log_dir) == path == find_last(log_dir, same)
    assert resolve_ckpt_path("last", log_dir, same) == str(path)
    other = {**same, "lrn": False}  # an ablation: the same shapes, another function
    with pytest.raises(FileNotFoundError, match=r"no last\.ckpt of this model"):
        resolve_ckpt_path("last", log_dir, other)
    with pytest.raises(ValueError, match=r"holds another model \(model.lrn: True -> False\)"):
        resolve_ckpt_path(str(path), log_dir, other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_ckpt_path(str(Path(log_dir) / "nothing.ckpt"), log_dir)
    assert resolve_ckpt_path(None, log_dir) is None
