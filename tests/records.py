"""A run's record, checked against an unbroken run's: weights, metrics.csv, the W&B segments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SHORT, read_metrics
from wandb_records import summarize

from alexnet import run_folder

# Exact resume needs the same arithmetic in both runs: fp32, and the workers on that draw the augmentation.
EPOCH = 5  # batches
EXACT = [
    *(o for o in SHORT if not o.startswith("trainer.limit_train_batches")), f"trainer.limit_train_batches={EPOCH}",
    "logger=csv", "test=false", "trainer.max_epochs=2", "trainer.precision=32-true", "data.num_workers=2",
    "callbacks.model_checkpoint=null",  # no best-so-far copies: 0.7 GB and a second each
]  # fmt: skip
STEPS = 2 * EPOCH


def assert_same_training(a: Path, b: Path) -> None:
    """Two last.ckpt files of the same step: the same weights and optimizer moments, to fp32 rounding."""
    first, second = (torch.load(path, weights_only=True) for path in (a, b))
    assert first["global_step"] == second["global_step"] == STEPS
    for name, tensor in first["state_dict"].items():
        torch.testing.assert_close(second["state_dict"][name], tensor, rtol=1e-5, atol=1e-7, msg=name)
    assert first["lr_schedulers"] == second["lr_schedulers"]  # the plateau scheduler stepped at every epoch's end
    assert first["lr_schedulers"][0]["last_epoch"] == 2
    moments = first["optimizer_states"][0]["state"]
    for i, state in moments.items():
        for key, value in state.items():
            torch.testing.assert_close(second["optimizer_states"][0]["state"][i][key], value, msg=f"{i}.{key}")


# Keys whose values depend on the clock or on where a throughput window began: not the same twice.
TIMED = ("train/time", "train/batches", "train/samples", "train/device/", "train/batches_per_sec")
TIMED += ("train/samples_per_sec", "train/flops_per_sec")


def _record(run_dir: Path) -> dict[tuple[str, int], float]:
    """A run's metrics.csv as (key, step) -> value, asserting that no key is logged twice at one step."""
    record: dict[tuple[str, int], float] = {}
    for row in read_metrics(run_dir):
        step = int(row.pop("step"))
        for key, value in row.items():
            if value == "" or key == "epoch" or key.startswith(TIMED):
                continue
            assert (key, step) not in record, f"{key} logged twice at step {step}"
            record[key, step] = float(value)
    return record


def assert_same_record(run_dir: Path, unbroken_dir: Path) -> None:
    """One metrics.csv holding every step of the unbroken run once, with its values (fp32 resumes exactly)."""
    record, reference = _record(run_dir), _record(unbroken_dir)
    lr = [k for k in record if k[0].startswith("lr-")]  # LearningRateMonitor: again when an epoch resumes mid-way
    assert {k for k in record if k not in lr} == {k for k in reference if not k[0].startswith("lr-")}
    for key, value in reference.items():
        assert record[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def assert_one_wandb_run(run_dir: Path, starts: list[int | tuple[int, None]]) -> list[list[int]]:
    """The W&B segments of one run: one id, each starting at the step its checkpoint resumed (W&B's step is
    the trainer's), steps in order; what ``wandb sync --id`` uploads as one run. Returns each one's steps."""
    runs = run_folder.wandb_runs(run_dir)
    assert len({run_folder.wandb_run_id(d) for d in runs}) == 1 and len(runs) == len(starts)
    # A segment killed by SIGKILL may lose what W&B had not yet written, its file even.
    files = [next(d.glob("run-*.wandb"), None) for d in runs]
    summaries = [summarize(f) if f else {"run": None, "steps": []} for f in files]
    assert {s["run"].run_id for s in summaries if s["run"]} == {run_folder.wandb_run_id(runs[0])}
    steps = [s["steps"] for s in summaries]
    # (start, None): a killed segment, which may have lost its steps.
    found = [segment[0] if segment else None for segment in steps]
    assert all(f in s if isinstance(s, tuple) else f == s for f, s in zip(found, starts, strict=True)), found
    assert all(segment == sorted(segment) for segment in steps)
    return steps
