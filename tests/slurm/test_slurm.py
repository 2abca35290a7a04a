"""On a real one-node SLURM cluster (``.ci/slurm-cluster``): a requeue mid-epoch, sweeps through submitit.

Skipped where there is no SLURM; under CI (``CI=true``) a missing cluster is a failure instead.
Each test submits real jobs with ``sbatch`` or Hydra's submitit launcher and waits for SLURM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, ROOT, SHORT, assert_ok, read_metrics, run_cli
from hydra.core.override_parser.overrides_parser import OverridesParser
from records import EPOCH, EXACT, STEPS, assert_one_wandb_run, assert_same_record, assert_same_training

from alexnet import run_folder

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
# The node's few CPUs: one per job, no GPU, and no time limit to speak of.
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.timeout_min=30"]  # fmt: skip


def _cluster_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return state.returncode == 0 and any(s in state.stdout for s in ("idle", "mixed", "alloc"))


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    if not _cluster_up():
        if os.environ.get("CI") == "true":
            pytest.fail("no SLURM cluster: .ci/run starts one with .ci/slurm-cluster")
        pytest.skip("no SLURM cluster here (start one as root with .ci/slurm-cluster)")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> str:
    """The demo data, made once: jobs running at the same time would each make it in the same folder."""
    workdir = tmp_path_factory.mktemp("data")
    root = workdir / "shapes"
    assert_ok(run_cli("train.py", *FAST, "logger=csv", f"data.root={root}", cwd=workdir))
    return f"data.root={root}"


def _state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
    return out or "GONE"


def _wait(condition, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _signal_once(job: str, folder: Path) -> bool:
    """SIGUSR1 to the job's steps, as ``--signal=USR1@<time>`` sends it, once: True when the job has written its
    requeue checkpoint into ``folder``, False if it ended first.

    SLURM 22.05 answers a signal to a running array task with "Job can not be altered now, try again later"
    although it delivered it, and scancel then tries again for a minute: a retry reached the job while it started
    again after its requeue, before it could catch the signal, and failed it (CI, 2026-12-04). So scancel is cut
    short, and the signal sent again only if no checkpoint follows.
    """
    for _ in range(4):
        try:
            if subprocess.run(["scancel", "--signal=USR1", job], capture_output=True, timeout=2).returncode:
                return False  # the job ended before the signal
        except subprocess.TimeoutExpired:  # scancel is retrying: the signal may have arrived all the same
            pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if list(folder.glob("hpc_ckpt_*.ckpt")):
                return True
            if _state(job) == "GONE":
                return False
            time.sleep(0.2)
    raise AssertionError(f"SLURM job {job} wrote no requeue checkpoint after four signals")


def assert_pastes(path: Path) -> None:
    """A path the project made works unquoted in a ``key=path`` override, as ``ls`` prints it."""
    override = OverridesParser.create().parse_override(f"ckpt_path={path}")
    assert override.value() == str(path), path


def test_a_job_requeued_mid_epoch_ends_as_an_unbroken_run_with_one_record(tmp_path, shapes):
    common = [*(o for o in EXACT if o != "logger=csv"), shapes]
    assert_ok(run_cli("train.py", *common, "hydra.run.dir=unbroken", cwd=tmp_path, env=ENV))
    script = tmp_path / "train.sbatch"
    script.write_text(
        "#!/bin/bash\n#SBATCH --requeue --open-mode=append --ntasks=1 --cpus-per-task=1\n"
        f"#SBATCH -o {tmp_path}/slurm-%j.out\n"
        f"cd {tmp_path}\nsrun {sys.executable} {ROOT / 'train.py'} {' '.join(common)}\n"
    )
    env = {**os.environ, **ENV}
    job = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, env=env, check=True)
    job_id = job.stdout.strip().split(";")[0]
    run_dir = tmp_path / f"logs/train/runs/slurm-{job_id}.0"  # named after the job: the requeued job finds it
    _wait(lambda: (run_dir / "metrics.csv").exists() and read_metrics(run_dir), "the first logged step")
    assert _signal_once(job_id, run_dir)  # as --signal=USR1@120 does, to the step
    _wait(lambda: _state(job_id) == "PENDING", "the requeue")
    # SLURM holds a requeued job for a while (BeginTime): start it now (+1 s: not within the same second).
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+1"], check=True)
    _wait(lambda: (run_dir / run_folder.RESULTS).exists() and _state(job_id) == "GONE", "the job's end")
    output = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert "Traceback" not in output and "Error executing job" not in output, output[-3000:]
    log = (run_dir / "train.log").read_text()
    assert f"Requeued SLURM job {job_id}" in log
    (hpc,) = run_dir.glob("hpc_ckpt_*.ckpt")
    step = torch.load(hpc, weights_only=True)["global_step"]
    assert 0 < step < STEPS and step % EPOCH  # between two steps of an epoch
    assert_same_training(tmp_path / "unbroken/checkpoints/last.ckpt", run_dir / "checkpoints/last.ckpt")
    assert_same_record(run_dir, tmp_path / "unbroken")
    first, _ = assert_one_wandb_run(run_dir, starts=[0, step])
    assert first[-1] == step - 1
    assert_pastes(hpc)


def _requeue_when_training(sweep: Path, count: int) -> list[str]:
    """SIGUSR1 (as a time limit sends it) to ``count`` jobs of a sweep as they log their first step, and each
    requeued job started again at once. A job's folder names its SLURM job in its log."""
    requeued: dict[str, str] = {}
    finished: set[str] = set()

    def signal_the_training() -> bool:
        for folder in sweep.glob("*/"):
            log = folder / "train.log"
            if folder.name in {*requeued, *finished} or not log.exists() or not (folder / "metrics.csv").exists():
                continue
            if not any(r.get("train/loss") for r in read_metrics(folder)):
                continue
            job = next(line.split("SLURM job ")[1].split(",")[0].strip() for line in log.read_text().splitlines()
                       if "SLURM job " in line)  # fmt: skip
            if _signal_once(job, folder):
                requeued[folder.name] = job
            else:
                finished.add(folder.name)  # it ended before the signal
        return len(requeued) >= count

    _wait(signal_the_training, "jobs in training", timeout=400)
    return list(requeued)


def _start_requeued_jobs_at_once(sweeping: subprocess.Popen) -> None:
    """Until the sweep ends: a requeued job of it (held by SLURM for a while) is started again at once."""
    while sweeping.poll() is None:
        listed = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i %r"], capture_output=True, text=True)
        for job in [line.split()[0] for line in listed.stdout.splitlines() if "BeginTime" in line]:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+1"], capture_output=True)
        time.sleep(0.2)


def test_a_sweep_through_slurm_names_its_jobs_as_the_basic_launcher_and_reruns_only_the_unfinished(tmp_path, shapes):
    """A 2 x 2 sweep, one SLURM job per point: two of them requeued mid-epoch, then one run again."""
    sweep = tmp_path / "sweep"
    batches = [o for o in SHORT if not o.startswith("trainer.limit_train_batches")] + ["trainer.limit_train_batches=10"]
    command = [
        "-m", *LAUNCHER, "experiment=baseline,ablate_lrn", "seed=1,2", "logger=csv", *batches, "trainer.max_epochs=1",
        "callbacks.model_checkpoint=null", shapes, f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    environment = {**os.environ, **ENV}
    out = open(tmp_path / "sweep.out", "w+")  # noqa: SIM115 - read at the end
    sweeping = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *command], cwd=tmp_path, env=environment, text=True,
        stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        requeued = _requeue_when_training(sweep, count=1)
        _start_requeued_jobs_at_once(sweeping)
        sweeping.wait(timeout=600)
        output = (tmp_path / "sweep.out").read_text()
    finally:
        sweeping.kill()  # on a failure: no sweep left behind, which would go on signalling its jobs
    assert sweeping.returncode == 0, output[-3000:]
    assert requeued and "Traceback" not in output
    jobs = run_folder.job_folders(sweep)
    names = {job.name.split("@")[0] for job in jobs}
    assert names == {f"experiment-{e}+seed-{s}" for e in ("baseline", "ablate_lrn") for s in (1, 2)}
    assert len({job.name.split("@")[1] for job in jobs}) == 1  # one digest: the overrides all jobs share
    for job in jobs:
        assert_pastes(job / "checkpoints/last.ckpt")
        assert run_folder.read_results(job) is not None
        steps = [int(r["step"]) for r in read_metrics(job) if r.get("train/loss")]
        assert steps == list(range(10)), (job, steps)  # requeued or not: every step once
    assert sorted(job.name for job in jobs if list(job.glob("hpc_ckpt_*.ckpt"))) == sorted(requeued)
    report = (sweep / run_folder.REPORT).read_text()
    assert "| baseline | 2 |" in report and "| ablate_lrn | 2 |" in report
    rerun = jobs[0]
    (rerun / run_folder.RESULTS).unlink()
    finished = {job: (job / run_folder.RESULTS).stat().st_mtime_ns for job in jobs[1:]}
    again = run_cli("train.py", *command, cwd=tmp_path, env=ENV)
    assert_ok(again)
    assert run_folder.job_folders(sweep) == jobs  # the same folders
    assert run_folder.read_results(rerun) is not None
    assert all((job / run_folder.RESULTS).stat().st_mtime_ns == t for job, t in finished.items())  # not run again
    assert "| baseline | 2 |" in (sweep / run_folder.REPORT).read_text()


def test_an_optuna_search_through_slurm_runs_two_trials_at_once_in_one_study(tmp_path, shapes):
    import optuna

    sweep = tmp_path / "search"
    command = [
        "-m", "hparams_search=optuna", *LAUNCHER, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "logger=csv",
        *SHORT, "trainer.max_epochs=1", shapes, f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    assert_ok(run_cli("train.py", *command, cwd=tmp_path, env=ENV))
    study = optuna.load_study(study_name="alexnet_lr_weight_decay", storage=f"sqlite:///{sweep / 'optuna.db'}")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    jobs = run_folder.job_folders(sweep)
    assert len(jobs) == 2
    spans = []
    for job in jobs:
        assert job.name.startswith("optimizer.lr-") and "+optimizer.weight_decay-" in job.name
        assert_pastes(job)
        results = json.loads((job / run_folder.RESULTS).read_text())
        assert 0 <= results["best/val_top1_error"] <= 1
        times = [float(r["train/time"]) for r in read_metrics(job) if r.get("train/time")]
        assert times
        spans.append(((job / ".hydra/config.yaml").stat().st_mtime, (job / run_folder.RESULTS).stat().st_mtime))
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end  # two SLURM jobs at the same time
