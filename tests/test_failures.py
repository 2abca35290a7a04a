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

from alexnet.callbacks import StopOnDivergence

# Exact resume needs the same arithmetic in both runs: fp32, and the workers on that draw the augmentation.
EPOCH = 5  # batches
EXACT = [
    *(o for o in SHORT if not o.startswith("trainer.limit_train_batches")), f"trainer.limit_train_batches={EPOCH}",
    "logger=csv", "test=false", "trainer.max_epochs=2", "trainer.precision=32-true", "data.num_workers=2",
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
def test_a_kill_while_a_step_checkpoint_is_written_resumes_mid_epoch_exactly(tmp_path, data_root, unbroken):
    """ckpt_every_n_steps=2: SIGKILL during the write at step 4 (of 5 in the epoch), ckpt_path=last, the same weights."""
    common = [*EXACT, f"data.root={data_root}", "ckpt_every_n_steps=2"]
    folder = tmp_path / "logs/train/runs/killed/checkpoints"
    run = _popen(tmp_path, *common, f"hydra.run.dir={folder.parent}")
    partial, last = folder / ".last.ckpt.partial", folder / "last.ckpt"
    _wait_for(lambda: last.exists() and partial.exists(), run)  # step 2's is in place, step 4's being written
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not list(folder.glob("epoch_*.ckpt"))  # killed in the first epoch
    stored = torch.load(last, weights_only=True)  # whole, and mid-epoch
    assert stored["global_step"] in (2, 4)
    resumed = run_cli("train.py", *common, "ckpt_path=last", cwd=tmp_path)
    assert_ok(resumed)
    assert f"Using checkpoint {last}" in resumed.stdout + resumed.stderr
    second = max((tmp_path / "logs/train/runs").iterdir(), key=lambda p: p.stat().st_mtime)
    steps = [int(row["step"]) for row in read_metrics(second) if row.get("train/loss")]
    assert steps[0] == stored["global_step"]  # it went on from there, not from the epoch's start
    _assert_same_training(unbroken, second / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_slurm_requeue_signal_checkpoints_between_steps_and_the_requeued_job_resumes(tmp_path, data_root, unbroken):
    """SIGUSR1 as `#SBATCH --signal=USR1@120` sends it; `scontrol requeue` ends the job, and SLURM starts it again."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # SLURM's requeue: note it, then end the job as SLURM would
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/requeued\nkill -9 $PPID\n')
    scontrol.chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_JOB_NAME": "alexnet", "SLURM_NTASKS": "1",
        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }  # fmt: skip
    common = [*EXACT, f"data.root={data_root}", "ckpt_every_n_steps=1"]
    run_dir = tmp_path / "logs/train/runs/slurm-4242.0"
    job = _popen(tmp_path, *common, env=slurm)
    _wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").exists(), job)  # training has begun
    job.send_signal(signal.SIGUSR1)
    job.wait(timeout=300)
    assert job.returncode == -signal.SIGKILL, job.stderr.read()[-4000:]
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"]
    (hpc,) = run_dir.glob("hpc_ckpt_*.ckpt")
    step = torch.load(hpc, weights_only=True)["global_step"]
    assert 0 < step < STEPS
    requeued = run_cli("train.py", *common, cwd=tmp_path, env={**slurm, "SLURM_RESTART_COUNT": "1"})
    assert_ok(requeued)
    assert "hpc_ckpt" in requeued.stdout + requeued.stderr
    _assert_same_training(unbroken, run_dir / "checkpoints" / "last.ckpt")


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


@pytest.mark.slow
def test_a_sweep_run_again_skips_finished_jobs_and_resumes_the_interrupted_one(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    command = [
        "-m", "experiment=baseline,ablate_lrn", "logger=csv", *SHORT, "trainer.max_epochs=1",
        f"data.root={data_root}", "ckpt_every_n_steps=1", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    first, second = sweep / "experiment=baseline", sweep / "experiment=ablate_lrn"  # named after what is swept
    run = _popen(tmp_path, *command)
    _wait_for(lambda: (second / "checkpoints" / "last.ckpt").exists(), run)  # the second job has begun
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
    assert "experiment=baseline" in report and "experiment=ablate_lrn" in report


def test_a_loss_far_above_its_running_mean_is_reported(caplog):
    watch = StopOnDivergence(loss_growth=10.0)
    with caplog.at_level(logging.WARNING, logger="alexnet.callbacks"):
        for step, loss in enumerate([2.3, 2.2, 2.1, 5.0, 30.0], 1):
            watch._watch_growth(SimpleNamespace(global_step=step), loss)
    (warning,) = caplog.records
    assert "the loss (30 at step 5) is over 10x its running mean" in warning.getMessage()
