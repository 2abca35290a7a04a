"""The checkpoint contract: what a run's checkpoint holds, rebuilding its net without Hydra, older checkpoints."""

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CLASS_WORDS, MODEL

from alexnet.checkpoint import find_last, load_model, resolve_ckpt_path
from alexnet.errors import CheckpointError
from alexnet.model import AlexNet


def test_the_checkpoint_holds_the_nets_arguments_its_normalization_and_classes(trained):
    path, data = trained.checkpoint, trained.data
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["model_kwargs"] == AlexNet(**MODEL).model_kwargs
    torch.testing.assert_close(checkpoint["normalization"]["mean"], data.normalization.mean)
    assert checkpoint["normalization"]["input_scale"] == 255.0
    assert checkpoint["classes"] == ["cat", "dog", "fox"]
    assert checkpoint["class_names"] == list(CLASS_WORDS.values())
    assert "rng_states" in checkpoint


def test_load_model_rebuilds_the_trained_net_without_hydra(trained):
    path, module, data = trained.checkpoint, trained.module, trained.data
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
    path, module = trained.checkpoint, trained.module
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
    assert load_model(old)[1].normalization is None
    # Not train.py's: said so, with what to pass instead.
    checkpoint["hyper_parameters"]["config"]["model"]["_target_"] = "torchvision.models.alexnet"
    torch.save(checkpoint, old)
    with pytest.raises(CheckpointError, match=r"not written by train.py.*logs/train"):
        load_model(old)


def test_last_is_the_newest_of_the_same_net_and_another_net_is_refused(trained):
    path = trained.checkpoint
    log_dir = path.parents[4]  # <log_dir>/train/runs/x/checkpoints/last.ckpt
    same = AlexNet(**MODEL).model_kwargs
    assert find_last(log_dir) == path == find_last(log_dir, same)
    assert resolve_ckpt_path("last", log_dir, same) == str(path)
    other = {**same, "lrn": False}  # an ablation: the same shapes, another function
    with pytest.raises(CheckpointError, match=r"no readable checkpoint of this model"):
        resolve_ckpt_path("last", log_dir, other)
    with pytest.raises(CheckpointError, match=r"holds another model \(model.lrn: True -> False\)"):
        resolve_ckpt_path(str(path), log_dir, other)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_ckpt_path(str(Path(log_dir) / "nothing.ckpt"), log_dir)
    assert resolve_ckpt_path(None, log_dir) is None


KILLED_WHILE_WRITING = """
import resource, signal, sys, torch
from alexnet.checkpoint import AtomicCheckpointIO

path, atomic = sys.argv[1], sys.argv[2] == "atomic"
save = AtomicCheckpointIO().save_checkpoint if atomic else torch.save  # torch.save: straight into place
save({"version": 1, "weights": torch.zeros(1_000_000)}, path)  # 4 MB
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel's default kills the process
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))  # killed after the first MB of a file
save({"version": 2, "weights": torch.ones(1_000_000)}, path)
"""


@pytest.mark.parametrize("writer", ["atomic", "in place"])
def test_a_kill_in_the_middle_of_a_checkpoint_write_leaves_the_old_file_whole(tmp_path, writer):
    """Lightning's own writer goes through a file in /tmp and a move: a copy, not a rename, when
    /tmp is another file system (and 0.7 GB there, and in memory); this one writes beside the target."""
    path = tmp_path / "last.ckpt"
    run = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(path), writer], capture_output=True)
    assert run.returncode == -signal.SIGXFSZ, run.stderr.decode()[-2000:]  # killed by the kernel, mid-write
    if writer == "atomic":
        assert torch.load(path, weights_only=True)["version"] == 1
        assert (tmp_path / ".last.ckpt.partial").stat().st_size == 1_000_000  # the write it was killed in
    else:  # what a write into place leaves, and the message it gets here
        assert path.stat().st_size == 1_000_000
        with pytest.raises(CheckpointError, match=r"last\.ckpt is truncated or not a checkpoint"):
            load_model(path)


def test_last_passes_over_a_truncated_checkpoint_to_the_newest_readable_one(trained, tmp_path, caplog):
    path = trained.checkpoint
    good, cut = (tmp_path / f"train/runs/{run}/checkpoints/last.ckpt" for run in ("a", "b"))
    for copy in (good, cut):
        copy.parent.mkdir(parents=True)
        shutil.copy(path, copy)
    os.utime(good, (1, 1))  # the older of the two
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a copy cut short
    with caplog.at_level(logging.WARNING, logger="alexnet.checkpoint"):
        assert find_last(tmp_path, AlexNet(**MODEL).model_kwargs) == good
    assert f"Passing over {cut} is truncated" in caplog.text
    with pytest.raises(CheckpointError, match="is truncated or not a checkpoint"):
        resolve_ckpt_path(str(cut), tmp_path, AlexNet(**MODEL).model_kwargs)
