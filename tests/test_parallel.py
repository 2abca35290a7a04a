"""The two-tower strategy against one process, on CPU processes talking over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet.model import AlexNet
from alexnet.parallel import AlexNetTower
from alexnet.parallel.collectives import _split_sizes

RUN = Path(__file__).with_name("towers_run.py")


def towers_run(out: Path, *args: str, processes: int = 1) -> list[float]:
    """tests/towers_run.py on one process, or on ``processes`` through torchrun; the losses it wrote."""
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*launch, str(RUN), "--out", str(out), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads((out / "losses.json").read_text())


def assert_same_training(towers_ckpt: Path, single_ckpt: Path) -> None:
    """Same tensor names, parameters and momentum, to 1e-5 relative to each tensor's scale.

    The towers sum in another order in fp32, so an element near zero may differ by more
    than 1e-5 of itself; no element differs by more than 1e-5 of its tensor's largest.
    """
    towers = torch.load(towers_ckpt, weights_only=True)
    single = torch.load(single_ckpt, weights_only=True)
    assert list(towers["state_dict"]) == list(single["state_dict"])  # plain model.* names, full shapes
    for name, value in single["state_dict"].items():
        torch.testing.assert_close(towers["state_dict"][name], value, rtol=1e-5, atol=1e-5 * value.abs().max().item())
    momentum = [s["momentum_buffer"] for s in single["optimizer_states"][0]["state"].values()]
    momentum_towers = [s["momentum_buffer"] for s in towers["optimizer_states"][0]["state"].values()]
    for ours, theirs in zip(momentum_towers, momentum, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


@pytest.mark.slow
def test_two_towers_train_like_the_grouped_model_in_one_process(tmp_path):
    """2 processes, one tower each, 3 SGD steps with dropout: same losses and parameters as one process."""
    args = ["--batch", "4", "--images", "12", "--dropout", "0.5"]
    single = towers_run(tmp_path / "single", *args)
    towers = towers_run(tmp_path / "towers", *args, "--towers", processes=2)
    torch.testing.assert_close(torch.tensor(towers), torch.tensor(single), rtol=1e-5, atol=0)
    assert single[0] != single[1]  # the steps really changed the model
    assert_same_training(tmp_path / "towers/step_3.ckpt", tmp_path / "single/step_3.ckpt")


@pytest.mark.slow
def test_two_by_two_towers_resume_a_single_process_checkpoint(tmp_path):
    """4 processes (2 towers x 2 replicas of batch 4) continue one process's batch-8 run exactly."""
    single = towers_run(tmp_path / "single", "--batch", "8", "--images", "8")
    # One step per epoch, so the checkpoint after step 1 is an epoch boundary and resuming replays nothing.
    towers = towers_run(
        tmp_path / "towers",
        *("--batch", "4", "--images", "8", "--towers", "--resume", str(tmp_path / "single/step_1.ckpt")),
        processes=4,
    )
    torch.testing.assert_close(torch.tensor(towers), torch.tensor(single[1:]), rtol=1e-5, atol=0)
    assert_same_training(tmp_path / "towers/step_3.ckpt", tmp_path / "single/step_3.ckpt")


@pytest.mark.parametrize("kwargs", [{"towers": 1}, {"grouped": False}])
def test_towers_refuse_a_model_without_towers(kwargs):
    with pytest.raises(ValueError, match="trainer=ddp"):
        AlexNetTower(AlexNet(num_classes=10, **kwargs), mesh=None)


def test_class_split_follows_dtensor_shards():
    assert _split_sizes(1000, 2) == [500, 500]
    assert _split_sizes(7, 2) == [4, 3]
    assert [len(c) for c in torch.arange(7).chunk(2)] == _split_sizes(7, 2)  # what Shard(0) holds
