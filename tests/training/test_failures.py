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
from records import EPOCH, EXACT, STEPS, assert_one_wandb_run, assert_same_record, assert_same_training

from alexnet.training.callbacks import StopOnDivergence


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


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("failures") / "shapes")


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, data_root) -> Path:
    """The reference: two epochs without a break."""
    workdir = tmp_path_factory.mktemp("unbroken")
    assert_ok(run_cli("train.py", *EXACT, f"data.root={data_root}", "hydra.run.dir=run", cwd=workdir))
    return workdir / "run" / "checkpoints" / "last.ckpt"


def _wait_for_write(folder: Path, process: subprocess.Popen, count: int = 1) -> None:
    """Until ``last.ckpt`` is being written for the ``count``-th time since now (its partial file exists)."""
    partial = folder / ".last.ckpt.partial"
    for i in range(count):
        if i:
            _wait_for(lambda: not partial.exists(), process)
        _wait_for(partial.exists, process)


@pytest.mark.slow
def test_resumed_at_an_epochs_end_requeued_then_killed_the_run_ends_as_an_unbroken_one_with_one_record(
    tmp_path, data_root, unbroken
):
    """One run started four times, as a long job lives on a cluster, and one record of it:

    1. the first epoch, and the run ends;
    2. ``ckpt_path=last`` continues it in its folder at that epoch's end, under SLURM, with
       ``ckpt_every_n_steps=2``. SIGUSR1 (as ``#SBATCH --signal=USR1@120`` sends it) brings a checkpoint
       between two steps, a quiet stop (exit 0, no traceback) and ``scontrol requeue``;
    3. SLURM starts the job again (the same command): it resumes the requeue checkpoint, mid-epoch, and
       is killed (SIGKILL, a node lost) in the middle of writing a step checkpoint;
    4. the job starts again: from the newest readable checkpoint, to the end.

    The weights, metrics.csv and the W&B run are those of an unbroken run.
    """
    common = [*(o for o in EXACT if o != "logger=csv"), f"data.root={data_root}"]  # with W&B, offline
    assert_ok(run_cli("train.py", *common, "trainer.max_epochs=1", cwd=tmp_path))
    (run_dir,) = (tmp_path / "logs/train/runs").iterdir()
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
    folder = run_dir / "checkpoints"
    job = _popen(tmp_path, *resume, env=slurm)
    _wait_for_write(folder, job)  # step 6's checkpoint: the second epoch is under way
    job.send_signal(signal.SIGUSR1)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-3000:]  # a requeued job's step ends as SLURM expects: quietly
    assert "Traceback" not in stderr and "Error executing job" not in stderr
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"]
    (hpc,) = run_dir.glob("hpc_ckpt_*.ckpt")
    step = torch.load(hpc, weights_only=True)["global_step"]
    assert EPOCH < step < STEPS - 1 and step % EPOCH  # between two steps, mid-epoch
    log = (run_dir / "train.log").read_text()  # where it stopped, and that it was requeued
    assert f"Stopped at step {step} (epoch 1) with {hpc} saved" in log and "Requeued SLURM job 4242" in log
    job = _popen(tmp_path, *resume, env={**slurm, "SLURM_RESTART_COUNT": "1"})
    _wait_for_write(folder, job)  # the next step checkpoint after the requeue checkpoint
    job.send_signal(signal.SIGKILL)  # in the middle of writing it
    job.wait()
    last = torch.load(folder / "last.ckpt", weights_only=True)  # the one before stays whole
    assert last["global_step"] < step
    again = run_cli("train.py", *resume, cwd=tmp_path, env={**slurm, "SLURM_RESTART_COUNT": "2"})
    assert_ok(again)
    assert f"Using checkpoint {hpc}" in again.stdout + again.stderr  # the newest readable one
    assert_same_training(unbroken, folder / "last.ckpt")
    assert_same_record(run_dir, unbroken.parent.parent)
    _, requeued, _, last = assert_one_wandb_run(run_dir, starts=[0, EPOCH, (step, None), step])
    assert requeued[-1] == step - 1 and last[-1] == STEPS - 1  # the requeued segment stopped where it said
    assert list(tmp_path.glob("logs/train/runs/*")) == [run_dir]  # one run, one folder


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
    batches = [o for o in SHORT if not o.startswith("trainer.limit_train_batches")] + ["trainer.limit_train_batches=5"]
    command = [
        "-m", "experiment=baseline,ablate_lrn", *batches, "trainer.max_epochs=1", f"data.root={data_root}",
        "ckpt_every_n_steps=2", f"hydra.sweep.dir={sweep}", "callbacks.model_checkpoint=null",
    ]  # fmt: skip
    run = _popen(tmp_path, *command)
    _wait_for(lambda: list(sweep.glob("experiment-ablate_lrn@*/checkpoints")), run)  # the second job began
    # Named after what is swept, with a digest of the overrides common to all jobs.
    (first,), (second,) = sweep.glob("experiment-baseline@*"), sweep.glob("experiment-ablate_lrn@*")
    _wait_for_write(second / "checkpoints", run, count=2)  # step 4's checkpoint, after step 2's
    run.send_signal(signal.SIGKILL)  # in the middle of writing it
    run.wait()
    assert (first / "results.json").exists() and not (second / "results.json").exists()
    finished = (first / "results.json").stat().st_mtime_ns
    # A job folder named as before (experiment=baseline-<hash>) is still the job's folder.
    first = first.rename(sweep / "experiment=baseline-1f2e3d4c")
    again = run_cli("train.py", *command, cwd=tmp_path)
    assert_ok(again)
    output = again.stdout + again.stderr
    assert f"Skipping {first}: it finished before" in output
    assert f"Continuing {second} from {second}/checkpoints/last.ckpt at step 2" in output  # step 2's, whole
    assert (first / "results.json").stat().st_mtime_ns == finished  # not run again
    assert (second / "results.json").exists()
    assert len(list(sweep.glob("*/.hydra"))) == 2  # no third folder
    # The interrupted job's record: every step once (those after its checkpoint logged again), one W&B run.
    assert [int(r["step"]) for r in read_metrics(second) if r.get("train/loss")] == [0, 1, 2, 3, 4]
    assert_one_wandb_run(second, starts=[(0, None), 2])  # what W&B had not written at the kill is lost
    report = (sweep / "report.md").read_text()
    assert "| baseline | 1 |" in report and "| ablate_lrn | 1 |" in report  # both jobs, finished


def test_a_loss_far_above_its_running_mean_is_reported(caplog):
    watch = StopOnDivergence(loss_growth=10.0)
    with caplog.at_level(logging.WARNING, logger="alexnet.training.callbacks"):
        for step, loss in enumerate([2.3, 2.2, 2.1, 5.0, 30.0], 1):
            watch._watch_growth(SimpleNamespace(global_step=step), loss)
    (warning,) = caplog.records
    assert "the loss (30 at step 4) is over 10x its running mean" in warning.getMessage()
