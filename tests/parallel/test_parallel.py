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
from alexnet.parallel.communication import Transfer, ddp_transfers, table, towers_transfers

RUN = Path(__file__).with_name("parallel_run.py")


def payload_by_kind(transfers: list[Transfer], steps: int = 1) -> dict[str, int]:
    """Total payload per kind of collective over ``steps`` steps, as parallel_run.py counts it in a run."""
    totals: dict[str, int] = {}
    for t in transfers:
        totals[t.kind] = totals.get(t.kind, 0) + t.payload * steps
    return totals


def parallel_run(out: Path, *args: str, processes: int = 1) -> list[float]:
    """tests/parallel/parallel_run.py on one process, or on ``processes`` through torchrun; the losses it wrote."""
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*launch, str(RUN), "--out", str(out), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads((out / "losses.json").read_text())


def _relative_errors(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    assert list(ours) == list(reference)  # plain model.* names
    for name, expected in reference.items():
        assert ours[name].shape == expected.shape, name  # full tensors, whatever the strategy
    return {name: ((ours[name] - expected).norm() / expected.norm()).item() for name, expected in reference.items()}


def assert_same_updates(ckpt: Path, reference_ckpt: Path, start_ckpt: Path) -> None:
    """Same tensor names and shapes, and each tensor moved from ``start_ckpt`` as in the reference run, to 5%.

    Not to fp32 rounding: a pre-activation within rounding of ReLU's kink (or a near-tie in
    max-pooling) can fall the other way in either run, and that one position's gradient then
    shifts every gradient below it. Seen with torch 2.14 on CPU: 1 of 173,056 conv5 outputs at
    +1.3e-6 in one process and -4.5e-8 under towers moved step 3's conv gradients by 1%, and the
    two-step update by under 1%. A wrong shard, a doubled or a missing gradient moves a tensor by
    another 20-100% of its update.
    """
    ours = torch.load(ckpt, weights_only=True)["state_dict"]
    reference = torch.load(reference_ckpt, weights_only=True)["state_dict"]
    start = torch.load(start_ckpt, weights_only=True)["state_dict"]
    moved = {name: ours[name] - start[name] for name in ours}
    expected = {name: reference[name] - start[name] for name in reference}
    for name, error in _relative_errors(moved, expected).items():
        assert error < 0.05, f"{name}: its update differs by {error:.1e} of itself"


def assert_same_first_gradient(ckpt: Path, reference_ckpt: Path) -> None:
    """After one SGD step the momentum buffers are the first gradients (plus weight decay): to 1e-5.

    (Later buffers are compared through the parameters only: the run amplifies fp32 rounding,
    and two single-process runs on 1 or 2 threads already differ by 1e-3 in step 3's momentum.)
    """
    names = list(torch.load(reference_ckpt, weights_only=True)["state_dict"])

    def momentum(path: Path) -> dict[str, torch.Tensor]:
        state = torch.load(path, weights_only=True)["optimizer_states"][0]["state"]
        return {name: state[i]["momentum_buffer"] for i, name in enumerate(names)}

    for name, error in _relative_errors(momentum(ckpt), momentum(reference_ckpt)).items():
        assert error < 1e-5, f"gradient of {name}: relative error {error:.1e}"


@pytest.mark.slow
def test_two_towers_train_like_the_grouped_model_in_one_process(tmp_path):
    """2 processes, one tower each, 3 SGD steps with dropout: same losses and parameters as one process.

    7 classes: the towers hold 4 and 3 of fc8's rows, and the logits are gathered from unequal pieces.
    """
    args = ["--batch", "4", "--images", "12", "--dropout", "0.5", "--classes", "7"]
    single = parallel_run(tmp_path / "single", *args)
    towers = parallel_run(tmp_path / "towers", *args, "--strategy", "towers", processes=2)
    torch.testing.assert_close(torch.tensor(towers), torch.tensor(single), rtol=1e-5, atol=0)
    assert single[0] != single[1]  # the steps really changed the model
    assert_same_first_gradient(tmp_path / "towers/step_1.ckpt", tmp_path / "single/step_1.ckpt")
    assert_same_updates(
        tmp_path / "towers/step_3.ckpt", tmp_path / "single/step_3.ckpt", tmp_path / "single/step_1.ckpt"
    )


@pytest.mark.slow
def test_two_by_two_towers_resume_a_single_process_checkpoint(tmp_path):
    """4 processes (2 towers x 2 replicas of batch 4) continue one process's batch-8 run exactly."""
    single = parallel_run(tmp_path / "single", "--batch", "8", "--images", "8")
    # One step per epoch, so the checkpoint after step 1 is an epoch boundary and resuming replays nothing.
    towers = parallel_run(
        tmp_path / "towers",
        *("--batch", "4", "--images", "8", "--strategy", "towers", "--resume", str(tmp_path / "single/step_1.ckpt")),
        processes=4,
    )
    torch.testing.assert_close(torch.tensor(towers), torch.tensor(single[1:]), rtol=1e-5, atol=0)
    assert_same_updates(
        tmp_path / "towers/step_3.ckpt", tmp_path / "single/step_3.ckpt", tmp_path / "single/step_1.ckpt"
    )


@pytest.mark.slow
def test_ddp_trains_like_one_process_on_the_combined_batch_and_moves_the_gradients_once(tmp_path):
    """2 DDP processes of batch 4 = one process of batch 8; DDP all-reduces every gradient once a step."""
    single = parallel_run(tmp_path / "single", "--batch", "8", "--images", "16")
    ddp = parallel_run(
        tmp_path / "ddp", *("--batch", "4", "--images", "16", "--strategy", "ddp", "--count-bytes"), processes=2
    )
    # 3e-5 apart by step 3: the LRN's C kernel rounds a pixel in a vector lane or in the tail of
    # its tile, which depends on the batch; a wrong all-reduce is off by far more.
    torch.testing.assert_close(torch.tensor(ddp), torch.tensor(single), rtol=1e-4, atol=0)
    assert_same_first_gradient(tmp_path / "ddp/step_1.ckpt", tmp_path / "single/step_1.ckpt")
    assert_same_updates(tmp_path / "ddp/step_3.ckpt", tmp_path / "single/step_3.ckpt", tmp_path / "single/step_1.ckpt")
    counted = json.loads((tmp_path / "ddp/comm.json").read_text())["payload"]
    assert counted == payload_by_kind(ddp_transfers(num_classes=10), steps=3)


@pytest.mark.slow
def test_counted_tower_traffic_matches_the_analytic_figures(tmp_path):
    parallel_run(tmp_path / "towers", "--batch", "4", "--strategy", "towers", "--count-bytes", "--save-at", processes=2)
    counted = json.loads((tmp_path / "towers/comm.json").read_text())
    check = counted["payload"].pop("consistency_check")  # on the first step (then every 50): 4 int64
    assert check == 32
    assert counted["payload"] == payload_by_kind(towers_transfers(batch=4, num_classes=10), steps=3)
    assert counted["calls"] == {"all_gather": 15, "reduce_scatter": 12, "consistency_check": 1}


def test_communication_table_at_the_papers_batch():
    """At batch 128 the towers send about an eighth of DDP's bytes; numbers from the shapes."""
    ddp = sum(t.sent for t in ddp_transfers())
    towers = sum(t.sent for t in towers_transfers(128))
    assert ddp == 2 * (2 - 1) / 2 * 4 * 60_965_224  # every fp32 gradient, ring all-reduce over 2
    conv3 = 128 * 128 * 13 * 13 * 4  # one tower's pool2 maps at batch 128
    assert towers_transfers(128)[0].payload == conv3
    assert 0.1 < towers / ddp < 0.15
    assert "| towers, 2 devices | 128 per tower | 31.3 MB | 15.7 MB |" in table()


@pytest.mark.parametrize("kwargs", [{"towers": 1}, {"grouped": False}])
def test_towers_refuse_a_model_without_towers(kwargs):
    with pytest.raises(ValueError, match="trainer=ddp"):
        AlexNetTower(AlexNet(num_classes=10, **kwargs), mesh=None)


def test_class_split_follows_dtensor_shards():
    assert _split_sizes(1000, 2) == [500, 500]
    assert _split_sizes(7, 2) == [4, 3]
    assert [len(c) for c in torch.arange(7).chunk(2)] == _split_sizes(7, 2)  # what Shard(0) holds
