"""A run's record across restarts, in-process: job folder names, the continued run folder, metrics.csv kept rows."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from alexnet.training import config
from alexnet.training.loggers import RunCSVLogger, kept_rows


class _Hydra:
    """The parts of HydraConfig a job folder's name is read from."""

    def __init__(self, sweep_dir: Path, params: dict | None = None) -> None:
        self.sweep = OmegaConf.create({"dir": str(sweep_dir)})
        self.sweeper = OmegaConf.create({"params": params})


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    def use(params=None, argv=(), multirun=None):
        monkeypatch.setattr(config, "current_hydra", lambda: _Hydra(tmp_path, params))
        monkeypatch.setattr(sys, "argv", ["train.py", *argv])
        if multirun is not None:
            (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": multirun}}}))
        return tmp_path

    return use


def _pastes(name: str) -> bool:
    path = f"logs/train/multiruns/2026-12-04_01-02-03/{name}/checkpoints/last.ckpt"
    return OverridesParser.create().parse_override(f"ckpt_path={path}").value() == path


def test_job_folders_are_named_after_the_swept_values_the_same_from_argv_and_from_multirun_yaml(sweep):
    job = ["experiment=ablate_lrn", "seed=1", "trainer.max_epochs=2"]
    command = ["experiment=baseline,ablate_lrn", "seed=1,2", "trainer.max_epochs=2"]
    sweep(argv=["-m", *command])
    local = config.job_folder(job)
    assert local.startswith("experiment-ablate_lrn+seed-1@") and _pastes(local)
    sweep(argv=["-m", "submitit", "worker"], multirun=command)  # a submitit worker: not Hydra's command line
    assert config.job_folder(job) == local
    other = config.job_folder(["experiment=ablate_lrn", "seed=1", "trainer.max_epochs=3"])
    assert other != local and other.startswith("experiment-ablate_lrn+seed-1@")  # other common settings


def test_optuna_trials_are_named_after_the_searched_keys_and_odd_values_get_a_digest(sweep):
    sweep(params={"optimizer.lr": "tag(log, interval(1e-5, 1e-1))"})
    name = config.job_folder(["optimizer.lr=0.00123"])
    assert name == "optimizer.lr-0.00123" and _pastes(name)
    odd = config.job_folder(["optimizer.lr=0.1", "data.root='/a b/c,d=[e]'"])  # quotes, spaces, = , brackets
    assert odd.startswith("optimizer.lr-0.1@") and _pastes(odd)
    names = {config.job_folder([f"data.root={v}"]) for v in ("/a/b", "/a_b", "/a b")}
    assert len(names) == 3 and all(_pastes(n) for n in names)  # replaced characters never collide


def test_a_sweep_run_again_finds_its_jobs_by_their_overrides_whatever_their_folders_are_called(sweep):
    root = sweep(argv=["-m", "seed=1,2"])
    old = root / "seed=1-c9bcadd8"  # named as before: Hydra's grammar in it
    (old / ".hydra").mkdir(parents=True)
    (old / ".hydra/overrides.yaml").write_text(yaml.safe_dump(["seed=1", "logger=csv"]))
    assert config.job_folder(["logger=csv", "seed=1"]) == old.name
    assert config.job_folder(["logger=csv", "seed=2"]).startswith("seed-2@")


def test_a_resumed_checkpoint_continues_its_runs_folder_and_the_config_of_each_start_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "logs/train/runs/2026-12-03_10-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra/config.yaml").write_text("{}")
    assert config.continued_run(None, "logs/train/runs", "new") == "logs/train/runs/new"
    assert config.continued_run("last", "logs/train/runs", "new") == "logs/train/runs/new"  # nothing to continue
    import torch

    (run / "checkpoints").mkdir()
    torch.save({"global_step": 3, "model_kwargs": {}}, run / "checkpoints/last.ckpt")
    assert config.continued_run("last", "logs/train/runs", "new") == str(run)
    assert config.continued_run(str(run / "checkpoints/last.ckpt"), "logs/train/runs", "new") == str(run)
    torch.save({"global_step": 3}, tmp_path / "elsewhere.ckpt")  # not in a run's folder: a new run
    assert config.continued_run(str(tmp_path / "elsewhere.ckpt"), "logs/train/runs", "new") == "logs/train/runs/new"
    assert config.record_subdir(str(tmp_path / "fresh")) == ".hydra"
    assert config.record_subdir(str(run)) == ".hydra/continued/1"
    (run / ".hydra/continued/1").mkdir(parents=True)
    assert config.record_subdir(str(run)) == ".hydra/continued/2"


def test_metrics_csv_keeps_the_rows_before_the_resumed_step_and_goes_on_below_them(tmp_path):
    with open(tmp_path / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", "step", "train/loss", "val/loss"])
        writer.writeheader()
        writer.writerows([{"epoch": 0, "step": s, "train/loss": 1.0 / (s + 1)} for s in range(5)])
        writer.writerow({"epoch": 0, "step": 4, "val/loss": 0.5})
    assert [r["step"] for r in kept_rows(tmp_path / "metrics.csv", 3)] == ["0", "1", "2"]
    logger = RunCSVLogger(str(tmp_path), resume_step=3)
    logger.log_metrics({"train/loss": 0.25, "train/new_key": 7.0, "epoch": 0}, step=3)  # a new column: rewritten
    logger.finalize("success")
    with open(tmp_path / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert rows[1]["train/loss"] == "0.5" and rows[3]["train/new_key"] == "7.0" and rows[0]["train/new_key"] == ""
    fresh = RunCSVLogger(str(tmp_path))  # no checkpoint to continue: a new record
    fresh.log_metrics({"train/loss": 2.0}, step=0)
    fresh.finalize("success")
    with open(tmp_path / "metrics.csv") as file:
        assert [r["step"] for r in csv.DictReader(file)] == ["0"]


def test_a_sweeps_optuna_study_lies_in_the_sweeps_folder_resolved_a_second_later(tmp_path, monkeypatch):
    """The Optuna sweeper resolves its storage in its own copy of the config: the folder's time must not move."""
    import time

    from hydra import compose, initialize_config_dir

    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[2]
    with initialize_config_dir(str(root / "conf")):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweep_dir = cfg.hydra.sweep.dir
    copy = OmegaConf.create(OmegaConf.to_container(cfg))  # as a plugin gets it: no resolver cache shared
    time.sleep(1.1)
    assert copy.hydra.sweeper.storage == f"sqlite:///{(tmp_path / sweep_dir).resolve() / 'optuna.db'}"
