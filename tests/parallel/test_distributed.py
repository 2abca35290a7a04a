"""train.py and eval.py on several CPU processes (gloo), as users start them: Lightning, torchrun, multirun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import ROOT, TINY_DATA, assert_ok, read_metrics, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet.checkpoint import load_model
from alexnet.data import ShapesDataModule
from alexnet.errors import ConfigError
from alexnet.training.module import AlexNetModule

# Two CPU processes, fp32 (bf16 would blur the agreement checks), a few steps.
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"]
TOWERS = ["trainer=towers", "trainer.accelerator=cpu", "trainer.precision=32-true"]
STEPS = [*TINY_DATA, "trainer.max_steps=3", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]


def _only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def _last_val(run: Path) -> dict[str, float]:
    rows = [r for r in read_metrics(run) if r.get("val/loss")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distributed")


@pytest.mark.slow
def test_ddp_writes_one_run_and_logs_the_mean_over_ranks(workdir):
    result = run_cli("train.py", *DDP, *STEPS, "test=false", cwd=workdir)
    assert_ok(result)
    run = _only(sorted((workdir / "logs/train/runs").iterdir()))  # one folder for both processes
    assert (run / "train.log").exists() and (run / "train_ddp_process_1.log").exists()  # a log per rank
    best, last = sorted(p.name for p in (run / "checkpoints").iterdir())  # one file per checkpoint
    assert best.startswith("epoch_000-top1_error_") and last == "last.ckpt"
    _only(list((run / "wandb").glob("offline-run-*")))  # one W&B run
    assert result.stdout.count("AlexNet with") + result.stderr.count("AlexNet with") == 1  # one copy of the log

    # The logged validation is over both ranks' images: one process validating the saved
    # weights on the same images (2 batches of 2 per rank = the first 8) gets the same numbers.
    model, _ = load_model(run / "checkpoints/last.ckpt")
    data = ShapesDataModule(
        str(workdir / "data/shapes"), train_per_class=4, val_per_class=2, batch_size=4, num_workers=0, input_scale=1.0
    )
    trainer = L.Trainer(accelerator="cpu", limit_val_batches=2, logger=False, enable_progress_bar=False)
    single = trainer.validate(AlexNetModule(model), datamodule=data, verbose=False)[0]
    logged = _last_val(run)
    assert logged["val/loss"] == pytest.approx(single["val/loss"], rel=1e-5)
    assert logged["val/top1_error"] == pytest.approx(single["val/top1_error"])
    assert logged["val/top5_error"] == pytest.approx(single["val/top5_error"])


@pytest.mark.slow
def test_towers_checkpoint_evaluates_on_one_process_as_the_run_reported(workdir):
    assert_ok(run_cli("train.py", *TOWERS, *STEPS, "logger=csv", "hydra.run.dir=logs/towers", cwd=workdir))
    run = workdir / "logs/towers"
    reported = json.loads((run / "results.json").read_text())
    checkpoint = torch.load(reported["best/checkpoint"], weights_only=True)
    assert all(not k.startswith("model.model") for k in checkpoint["state_dict"])  # the plain model's names
    assert checkpoint["state_dict"]["model.fc6.weight"].shape == (4096, 9216)  # whole, not one tower's half
    assert sorted(p.name for p in (run / "conv1").iterdir()) == ["epoch_000-tower_1.png", "epoch_000-tower_2.png"]

    result = run_cli(
        "eval.py", f"ckpt_path={reported['best/checkpoint']}", *TINY_DATA, "trainer.precision=32-true", cwd=workdir
    )
    assert_ok(result)
    evaluated = json.loads(_only(sorted((workdir / "logs/eval/runs").glob("*/results.json"))).read_text())
    for key in ("test/centre_crop_top1_error", "test/centre_crop_top5_error", "test/ten_crop_top1_error"):
        assert evaluated[key] == pytest.approx(reported[key]), key


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_and_it_resumes_from_last(tmp_path):
    """Kill rank 1 after the first epoch's checkpoint: rank 0 exits non-zero within seconds; resume continues."""
    overrides = [*DDP, *TINY_DATA, "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=csv"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "PYTHONWARNINGS": "ignore"}
    killed_run = "hydra.run.dir=logs/train/runs/killed"
    command = [sys.executable, str(ROOT / "train.py"), *overrides, "trainer.max_epochs=50", killed_run]
    with open(tmp_path / "out.txt", "w") as out:
        rank0 = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        last = tmp_path / "logs/train/runs/killed/checkpoints/last.ckpt"
        deadline = time.monotonic() + 300
        while not last.exists() and rank0.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert last.exists(), (tmp_path / "out.txt").read_text()[-3000:]
        children = subprocess.run(["pgrep", "-P", str(rank0.pid)], capture_output=True, text=True).stdout.split()
        rank1 = int(_only(children))
        os.kill(rank1, signal.SIGKILL)
        killed = time.monotonic()
        code = rank0.wait(timeout=120)  # a hang fails the test here
    assert code != 0
    assert time.monotonic() - killed < 60
    epochs_done = torch.load(last, weights_only=True)["epoch"]

    result = run_cli("train.py", *overrides, f"trainer.max_epochs={epochs_done + 2}", "ckpt_path=last", cwd=tmp_path)
    assert_ok(result)
    assert f"Restored all states from the checkpoint at {last}" in result.stdout + result.stderr
    resumed = sorted((tmp_path / "logs/train/runs").glob("*/checkpoints/last.ckpt"), key=os.path.getmtime)[-1]
    assert torch.load(resumed, weights_only=True)["epoch"] == epochs_done + 1


@pytest.mark.slow
def test_multirun_of_ddp_jobs_runs_each_job_once_in_its_own_folder(tmp_path):
    result = run_cli("train.py", "-m", "seed=1,2", *DDP, *STEPS, "test=false", cwd=tmp_path)
    assert_ok(result)
    sweep = _only(sorted((tmp_path / "logs/train/multiruns").iterdir()))  # rank 1 never ran the sweep itself
    assert not (tmp_path / "logs/train/runs").exists()  # nor a run of its own
    jobs = sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))
    assert [j.name.split("@")[0] for j in jobs] == ["seed-1", "seed-2"]  # named after what is swept
    for job in jobs:
        assert (job / "train_ddp_process_1.log").exists()  # rank 1 ran this job, in this folder
        _only(list((job / "wandb").glob("offline-run-*")))
        assert (job / "checkpoints/last.ckpt").exists()
    assert "seed: 2" in (jobs[1] / ".hydra/config.yaml").read_text()
    assert (sweep / "report.md").exists()


@pytest.mark.slow
def test_torchrun_runs_share_one_folder_and_a_sweep_under_torchrun_is_refused(workdir):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "1"}
    overrides = [*DDP, *STEPS, "test=false", "logger=csv"]
    result = subprocess.run(
        [*torchrun, str(ROOT / "train.py"), *overrides],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_ok(result)
    run = _only(sorted((workdir / "logs/train/runs").glob("torchrun-*")))
    assert (run / "train.log").exists() and (run / "train_rank1.log").exists()
    assert (run / "checkpoints/last.ckpt").exists()

    refused = subprocess.run(
        [*torchrun, str(ROOT / "train.py"), "-m", "seed=1,2", *overrides],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0
    assert "every process would run every job of the sweep" in refused.stdout + refused.stderr
    assert "hydra/launcher=slurm" in refused.stdout + refused.stderr


def test_slurm_launcher_sizes_jobs_from_the_trainer():
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher

    with initialize_config_dir(str(ROOT / "conf")):
        overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    # As Hydra builds it for a sweep: it takes launchers only from the hydra_plugins namespace.
    context = HydraContext(config_loader=None, callbacks=None)
    built = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=print, config=cfg)
    assert isinstance(built, submitit_launcher.SlurmLauncher) and type(built).__module__.endswith(
        "alexnet_lab.slurm_launcher"
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["additional_parameters"]["signal"] == "USR1@120"  # Lightning's requeue signal


@pytest.mark.parametrize(
    ("per_device", "replicas", "expected"), [(False, 1, 128), (False, 2, 64), (False, 4, 32), (True, 2, 128)]
)
def test_batch_size_is_global_unless_per_device(per_device, replicas, expected):
    data = ShapesDataModule("unused", batch_size=128, batch_size_per_device=per_device)
    data._replicas = lambda: (replicas, 0)
    assert data.device_batch_size == expected


def test_a_global_batch_that_does_not_split_is_refused():
    data = ShapesDataModule("unused", batch_size=6)
    data._replicas = lambda: (4, 0)
    with pytest.raises(ValueError, match=r"data.batch_size=6 is the global batch.*batch_size_per_device"):
        data.device_batch_size  # noqa: B018


def test_a_finished_run_folder_is_not_reused(tmp_path, monkeypatch):
    from alexnet.training.launch import check_run_folder

    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    check_run_folder(tmp_path)  # fresh: fine
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="new --rdzv-id"):
        check_run_folder(tmp_path)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued SLURM job resumes in its own folder
    check_run_folder(tmp_path)


def _fake_trainer(world_size: int, external: bool):
    environment = SimpleNamespace(creates_processes_externally=external)
    return SimpleNamespace(world_size=world_size, strategy=SimpleNamespace(cluster_environment=environment))


@pytest.mark.parametrize(
    ("launcher", "external", "error"),
    [
        ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", False, None),  # Lightning starts the ranks
        ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", True, "every process would run every job"),
        ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", True, None),  # a task per rank
        ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", False, "one task but"),
        ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", False, "several sweep jobs at once"),
        ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", False, "several sweep jobs at once"),
    ],
)
def test_which_sweeps_of_distributed_runs_are_refused(monkeypatch, launcher, external, error):
    from alexnet.training import launch

    monkeypatch.setattr(launch, "in_multirun", lambda: True)
    monkeypatch.setattr(launch, "current_hydra", lambda: OmegaConf.create({"launcher": {"_target_": launcher}}))
    if error is None:
        launch.check_launch(_fake_trainer(2, external))
    else:
        with pytest.raises(ConfigError, match=error):
            launch.check_launch(_fake_trainer(2, external))
    launch.check_launch(_fake_trainer(1, external))  # one process: nothing to refuse


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SLURM_JOB_ID": "123", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_NAME": "alexnet"},
            "slurm-123.0",
        ),
        (
            {"SLURM_JOB_ID": "123", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "bash"},
            None,
        ),  # srun --pty
        ({"TORCHELASTIC_RUN_ID": "abc"}, "torchrun-abc"),
        ({"TORCHELASTIC_RUN_ID": "none"}, None),
        ({}, None),
    ],
)
def test_run_folder_is_named_after_the_launch(monkeypatch, env, expected):
    from alexnet.training.config import run_name

    for key in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = run_name()
    assert name == expected if expected else re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", name)
