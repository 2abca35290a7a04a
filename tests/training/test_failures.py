"""Runs that survive: divergence, a kill mid-epoch and mid-write, SLURM's requeue signal, an interrupted sweep.

Real failures, not mocks: a learning rate that diverges, SIGKILL while a checkpoint is
being written, SIGUSR1 as SLURM sends it, a sweep killed after its first job.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, SHORT, assert_ok, read_metrics, run_cli

from alexnet.training.callbacks import StopOnDivergence

# Exact resume needs the same arithmetic in both runs: fp32, and the workers on that draw the augmentation.
EPOCH = 5  # batches
EXACT = [
    *(o for o in SHORT if not o.startswith("trainer.limit_train_batches")), f"trainer.limit_train_batches={EPOCH}",
    "logger=csv", "test=false", "trainer.max_epochs=2", "trainer.precision=32-true", "data.num_workers=2",
    "callbacks.model_checkpoint=null",  # no best-so-far copies: 0.7 GB and a second each
]  # fmt: skip
STEPS = 2 * EPOCH


def _popen(workdir: Path, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=workdir,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before the moment to interrupt it:\n{process.stderr.read()[-4000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the moment to interrupt the run")
        time.sleep(0.001)


def _assert_same_training(a: Path, b: Path) -> None:
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


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("failures") / "shapes")


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, data_root) -> Path:
    """The reference: two epochs without a break."""
    workdir = tmp_path_factory.mktemp("unbroken")
    assert_ok(run_cli("train.py", *EXACT, f"data.root={data_root}", "hydra.run.dir=run", cwd=workdir))
    return workdir / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_resumed_at_an_epochs_end_then_killed_and_requeued_mid_epoch_the_run_ends_as_an_unbroken_one(
    tmp_path, data_root, unbroken
):
    """One run started three times, as a long job lives:

    1. the first epoch, and the run ends;
    2. ``ckpt_path=last`` resumes it at that epoch's end, under SLURM, with ``ckpt_every_n_steps=2``.
       SIGUSR1 (as ``#SBATCH --signal=USR1@120`` sends it) brings a checkpoint between two steps and
       ``scontrol requeue``; then SIGKILL, in the middle of writing a step checkpoint;
    3. SLURM starts the job again (the same command): it resumes the requeue checkpoint, mid-epoch.
    """
    common = [*EXACT, f"data.root={data_root}"]
    assert_ok(run_cli("train.py", *common, "trainer.max_epochs=1", cwd=tmp_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # SLURM's requeue, noted
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/requeued\n')
    scontrol.chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_JOB_NAME": "alexnet", "SLURM_NTASKS": "1",
        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }  # fmt: skip
    resume = [*common, "ckpt_every_n_steps=2", "ckpt_path=last"]
    run_dir = tmp_path / "logs/train/runs/slurm-4242.0"  # named after the SLURM job: the requeued job finds it
    folder = run_dir / "checkpoints"
    job = _popen(tmp_path, *resume, env=slurm)
    _wait_for(lambda: (folder / "last.ckpt").exists(), job)  # step 6's checkpoint: the second epoch is under way
    job.send_signal(signal.SIGUSR1)
    _wait_for(lambda: list(run_dir.glob("hpc_ckpt_*.ckpt")) and (folder / ".last.ckpt.partial").exists(), job)
    job.send_signal(signal.SIGKILL)  # in the middle of writing a later last.ckpt
    job.wait()
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"]
    last = torch.load(folder / "last.ckpt", weights_only=True)  # the one before stays whole
    (hpc,) = run_dir.glob("hpc_ckpt_*.ckpt")
    step = torch.load(hpc, weights_only=True)["global_step"]
    assert EPOCH < step < STEPS and step % EPOCH and last["global_step"] < step  # between two steps, mid-epoch
    requeued = run_cli("train.py", *resume, cwd=tmp_path, env={**slurm, "SLURM_RESTART_COUNT": "1"})
    assert_ok(requeued)
    assert f"Using checkpoint {hpc}" in requeued.stdout + requeued.stderr  # the newest readable one
    steps = [int(row["step"]) for row in read_metrics(run_dir) if row.get("train/loss")]
    assert steps[0] == step  # it went on from there, not from the epoch's start
    _assert_same_training(unbroken, folder / "last.ckpt")


@pytest.mark.slow
def test_a_diverging_run_stops_with_an_error_and_no_score(tmp_path):
    result = run_cli("train.py", "logger=csv", *SHORT, "optimizer.lr=1e8", cwd=tmp_path, env={"HYDRA_FULL_ERROR": ""})
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "training diverged: the loss became nan at step" in line and "optimizer lr 1e+08" in line
    assert "Lower optimizer.lr (e.g. 1e+07)" in line
    (run,) = (tmp_path / "logs/train/runs").iterdir()
    assert not (run / "results.json").exists()  # no error rate reported
    assert not list(run.glob("checkpoints/*.ckpt"))  # and no diverged weights kept
    # In a sweep, that job fails alone: the sweep goes on (to its next job, or its end), exit 0.
    sweep = tmp_path / "sweep"
    swept = run_cli(
        "train.py", "-m", "logger=csv", *SHORT, "optimizer.lr=1e8", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert_ok(swept)
    assert "this job failed, the sweep goes on" in swept.stderr + swept.stdout
    assert list(sweep.glob("*/train.log")) and not list(sweep.glob("*/results.json"))


@pytest.mark.slow
def test_a_sweep_run_again_skips_finished_jobs_and_resumes_the_interrupted_one(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    command = [
        "-m", "experiment=baseline,ablate_lrn", "logger=csv", *SHORT, "trainer.max_epochs=1",
        f"data.root={data_root}", "ckpt_every_n_steps=2", f"hydra.sweep.dir={sweep}", "callbacks.model_checkpoint=null",
    ]  # fmt: skip
    run = _popen(tmp_path, *command)
    _wait_for(lambda: list(sweep.glob("experiment=ablate_lrn-*/checkpoints/last.ckpt")), run)  # the second job began
    # Named after what is swept, with a hash of the overrides common to all jobs.
    (first,), (second,) = sweep.glob("experiment=baseline-*"), sweep.glob("experiment=ablate_lrn-*")
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert (first / "results.json").exists() and not (second / "results.json").exists()
    finished = (first / "results.json").stat().st_mtime_ns
    again = run_cli("train.py", *command, cwd=tmp_path)
    assert_ok(again)
    output = again.stdout + again.stderr
    assert f"Skipping {first}: it finished before" in output
    assert f"Resuming this job of the sweep from {second}/checkpoints/last.ckpt" in output
    assert (first / "results.json").stat().st_mtime_ns == finished  # not run again
    assert (second / "results.json").exists()
    report = (sweep / "report.md").read_text()
    assert "| baseline | 1 |" in report and "| ablate_lrn | 1 |" in report  # both jobs, finished


def test_a_loss_far_above_its_running_mean_is_reported(caplog):
    watch = StopOnDivergence(loss_growth=10.0)
    with caplog.at_level(logging.WARNING, logger="alexnet.training.callbacks"):
        for step, loss in enumerate([2.3, 2.2, 2.1, 5.0, 30.0], 1):
            watch._watch_growth(SimpleNamespace(global_step=step), loss)
    (warning,) = caplog.records
    assert "the loss (30 at step 4) is over 10x its running mean" in warning.getMessage()
