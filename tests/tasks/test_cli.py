"""train.py and eval.py as a user runs them: experiments, errors, tracking, checkpoints, resume."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import FAST, ROOT, SHORT, TINY_DATA, assert_ok, closed_port, read_metrics, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from wandb_records import summarize

from alexnet.checkpoint import load_model
from alexnet.data.shapes import CLASSES

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def _compose(*overrides: str) -> dict:
    """train.py's composed config, as ``--cfg job`` prints it (without starting Python)."""
    with initialize_config_dir(str(ROOT / "conf")):
        return OmegaConf.to_container(compose("train", overrides=list(overrides)))


def _run_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "logs" / "train" / "runs").iterdir())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One working directory for the module: the demo data is generated once."""
    return tmp_path_factory.mktemp("cli")


def test_the_expected_experiments_exist():
    assert set(EXPERIMENTS) >= {
        "paper", "ablate_lrn", "ablate_overlap", "ablate_towers", "ablate_groups",
        "ablate_dropout", "ablate_relu", "ablate_lighting",
    }  # fmt: skip


@pytest.mark.slow
def test_every_experiment_composes_and_runs_one_batch(workdir):
    """Every experiment on the demo data; the CIFAR-10 ones on their own data (tests/data/test_cifar.py)."""
    result = run_cli("train.py", "-m", "experiment=glob(*,exclude=cifar_*)", "logger=csv", *FAST, cwd=workdir)
    assert_ok(result)
    jobs = sorted((workdir / "logs" / "train" / "multiruns").glob("*/*/.hydra/overrides.yaml"))
    on_the_demo = {e for e in EXPERIMENTS if not e.startswith("cifar_")}
    assert len(jobs) == len(on_the_demo) and len(on_the_demo) < len(EXPERIMENTS)
    assert {j.read_text().split("experiment=")[1].split()[0] for j in jobs} == on_the_demo


def test_each_ablation_reaches_the_model():
    """The composed config of each experiment carries its change, on top of the demo's recipe."""
    expected = {
        "ablate_lrn": ("model", "lrn", False),
        "ablate_overlap": ("model", "overlap", False),
        "ablate_towers": ("model", "towers", 1),
        "ablate_groups": ("model", "grouped", False),
        "ablate_dropout": ("model", "dropout", 0.0),
        "ablate_relu": ("model", "activation", "tanh"),
        "ablate_lighting": ("data", "lighting_std", 0.0),
    }
    for name, (group, key, value) in expected.items():
        cfg = _compose(f"experiment={name}")
        assert cfg[group][key] == value, name
        assert cfg["optimizer"]["_target_"] == "torch.optim.Adam" and cfg["data"]["batch_size"] == 32, name


@pytest.mark.parametrize("choice", ["experiment=paper", "data=imagenet", "data=prepared"])
def test_paper_recipe_with_experiment_paper_or_on_imagenet(choice):
    """The demo's CPU recipe stays with the demo data: both of these get the paper's §5 recipe."""
    cfg = _compose(choice)
    assert cfg["optimizer"] == {
        "_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005,
        "fused": True,
    }  # fmt: skip
    assert cfg["model"]["init"] == "paper" and cfg["model"]["towers"] == 2 and cfg["model"]["lrn"] is True
    assert cfg["data"]["batch_size"] == 128 and cfg["data"]["input_scale"] == 255.0
    assert cfg["data"]["lighting_std"] == 0.1 and cfg["trainer"]["max_epochs"] == 90
    assert cfg["scheduler"]["factor"] == 0.1 and cfg["scheduler"]["mode"] == "min"


def test_the_demo_data_brings_its_recipe_and_data_configs_describe_data():
    cfg = _compose()
    assert cfg["optimizer"]["_target_"] == "torch.optim.Adam" and cfg["model"]["init"] == "kaiming"
    assert (cfg["data"]["batch_size"], cfg["data"]["input_scale"], cfg["trainer"]["max_epochs"]) == (32, 1.0, 2)
    for path in (ROOT / "conf" / "data").glob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        if "data" in config:  # a @package _global_ data config: data and the class count only
            assert set(config) <= {"defaults", "data", "model"} and set(config.get("model", {})) <= {"num_classes"}
            config = config["data"]
        recipe_keys = {"batch_size", "input_scale"} & set(config)
        assert not recipe_keys, f"{path.name} sets {recipe_keys}: recipe settings belong in conf/recipe/"


@pytest.mark.slow
def test_short_run_writes_everything_and_eval_agrees(workdir):
    # Logged in, and the W&B server down (a closed port): the run is logged offline after 3 s.
    outage = {"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}", "WANDB_MODE": ""}
    result = run_cli("train.py", "trainer.max_epochs=2", *SHORT, "logger.wandb.init_timeout=3", cwd=workdir, env=outage)
    assert_ok(result)
    assert "W&B could not start the training run in online mode" in result.stderr + result.stdout
    run = _run_dirs(workdir)[-1]
    # metrics.csv: two validated epochs, errors in [0, 1], the lr and the image rate logged.
    rows = read_metrics(run)
    val = [r for r in rows if r.get("val/top1_error")]
    assert [int(r["epoch"]) for r in val] == [0, 1]
    assert all(0 <= float(r["val/top1_error"]) <= 1 for r in val)
    assert any(r.get("lr-Adam") for r in rows)
    assert any(r.get("train/device/samples_per_sec") for r in rows)
    assert any(r.get("train/device/flops_per_sec") for r in rows)  # from the model's measured FLOPs
    assert any(r.get("train/top1_error_step") for r in rows)
    # Checkpoints: last and best, each rebuilding the run's net with its normalization and classes.
    ckpts = {p.name for p in (run / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in ckpts and any(n.startswith("epoch_") for n in ckpts)
    model, info = load_model(run / "checkpoints" / "last.ckpt")
    assert model.num_classes == 10 and info.classes == sorted(CLASSES) and info.normalization.input_scale == 1.0
    assert info.epoch == 1 and info.config["data"]["batch_size"] == 4  # the run config, for the record
    # conv1 filters, one grid per tower per epoch: 48 kernels of 11x11 upscaled 4x, 16 to a row, not blank.
    assert sorted(p.name for p in (run / "conv1").glob("*.png")) == [
        "epoch_000-tower_1.png", "epoch_000-tower_2.png", "epoch_001-tower_1.png", "epoch_001-tower_2.png",
    ]  # fmt: skip
    with Image.open(run / "conv1" / "epoch_001-tower_1.png") as grid:
        assert grid.size == (16 * (44 + 2) + 2, 3 * (44 + 2) + 2) and grid.mode == "RGB"
        assert len(grid.getcolors(maxcolors=1 << 20)) > 1000  # filters, not a flat image
    # The final table, and results.json with both test readings.
    output = result.stderr + result.stdout
    assert "centre crop" in output and "10 patches" in output and "worst classes" in output
    results = json.loads((run / "results.json").read_text())
    for key in ("centre_crop", "ten_crop"):
        assert 0 <= results[f"test/{key}_top5_error"] <= results[f"test/{key}_top1_error"] <= 1
    # The W&B offline run (what `wandb sync` uploads): readable, with the config, parameter count, commit and metrics.
    wandb_files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(wandb_files) == 1
    record = summarize(wandb_files[0])
    assert record["run"].run_id and "default" in list(record["run"].tags)
    assert json.loads(record["config"]["parameters"]) == 56_909_194  # the paper's net with 10 classes
    assert "config" in record["config"] and "git_commit" in record["config"]
    logged = {k for row in record["history"] for k in row}
    assert {"val/top1_error", "val/top5_error", "train/loss", "test/ten_crop_top1_error"} <= logged
    assert any(k.startswith("conv1") for k in logged)
    # Figure 3 in the W&B run is the PNG on disk, not a black image (float [0, 1] read as bytes).
    logged_grids = sorted(wandb_files[0].parent.glob("files/media/images/conv1_*.png"))
    assert logged_grids
    with Image.open(logged_grids[-1]) as logged, Image.open(run / "conv1" / "epoch_001-tower_1.png") as saved:
        assert len(logged.convert("RGB").getcolors(maxcolors=1 << 20)) > 1000
        assert logged.size == saved.size
    assert "wandb sync" in result.stderr + result.stdout
    # eval.py on the best checkpoint reproduces the test numbers.
    # data.input_scale=255 would score the model on the wrong pixel range: eval.py takes the
    # normalization from the checkpoint's run, so the numbers still match.
    evaluated = run_cli(
        "eval.py", f"ckpt_path={results['best/checkpoint']}", "data.input_scale=255", *TINY_DATA,
        "trainer.limit_test_batches=2", cwd=workdir,
    )  # fmt: skip
    assert_ok(evaluated)
    eval_results = json.loads(sorted((workdir / "logs" / "eval" / "runs").glob("*/results.json"))[-1].read_text())
    for key in ("centre_crop_top1_error", "centre_crop_top5_error", "ten_crop_top1_error", "ten_crop_top5_error"):
        assert eval_results[f"test/{key}"] == pytest.approx(results[f"test/{key}"])
    assert "10 patches" in evaluated.stdout and "worst classes" in evaluated.stdout
    assert "Normalizing as the checkpoint's run did: SubtractMean(mean=[" in evaluated.stdout
    assert "input_scale=1.0)" in evaluated.stdout


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data=imagenet", "data.root=/nonexistent"], "data.root=/nonexistent does not exist"),
        (["experiment=nope"], "ablate_lrn"),  # Hydra lists the available experiments
        (["model.towers=3"], "model.towers=3 is not valid; allowed values: [1, 2]"),
        (["ckpt_path=nowhere.ckpt"], "ckpt_path=nowhere.ckpt does not exist"),
        (["trainer.max_epoch=3"], "Could not override 'trainer.max_epoch'"),  # Hydra's own errors too
    ],
)
def test_bad_input_fails_at_once_with_one_line(tmp_path, overrides, expected):
    result = run_cli("train.py", *overrides, "logger=csv", cwd=tmp_path, env={"HYDRA_FULL_ERROR": ""})
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "shapes").exists()  # nothing was generated before failing


def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = run_cli("train.py", "ckpt_path=nowhere.ckpt", "logger=csv", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "CheckpointError: ckpt_path=nowhere.ckpt does not exist" in result.stderr


@pytest.mark.slow
def test_optuna_sweep_tunes_lr_and_weight_decay(workdir):
    result = run_cli(
        "train.py", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1",
        "logger=csv", *SHORT, cwd=workdir,
    )  # fmt: skip
    assert_ok(result)
    sweep = sorted((workdir / "logs" / "train" / "multiruns").iterdir())[-1]
    best = (sweep / "optimization_results.yaml").read_text()
    assert "optimizer.lr" in best and "optimizer.weight_decay" in best and "best_value" in best
    lrs = {overrides.read_text() for overrides in sweep.glob("*/.hydra/overrides.yaml")}
    assert len(lrs) == 2  # two different trials
    import optuna

    study = optuna.load_study(study_name="alexnet_lr_weight_decay", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # on disk, to add trials to


@pytest.mark.slow
def test_an_optuna_sweep_goes_on_in_a_study_that_optuna_2_made(workdir, tmp_path):
    import sqlite3

    import optuna

    sweep = tmp_path / "sweep"  # a sweep of the project before Hydra 1.4: optuna 2.10.1, two trials
    sweep.mkdir()
    with sqlite3.connect(sweep / "optuna.db") as database:
        database.executescript((ROOT / "tests" / "fixtures" / "optuna-2.10.1-study.sql").read_text())
    result = run_cli(
        "train.py", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "trainer.max_epochs=1",
        "logger=csv", f"hydra.sweep.dir={sweep}", *SHORT, cwd=workdir,
    )  # fmt: skip
    assert_ok(result)
    study = optuna.load_study(study_name="alexnet_lr_weight_decay", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3  # the old two, and this sweep's
    assert (sweep / "optuna.db.v2.6.0.a.bak").is_file()  # the file as optuna 2 left it


def _job_span(job: Path) -> tuple[float, float, str]:
    """A job's start (its log's first line) and end (its results.json), and the devices it said it trains on."""
    from datetime import datetime

    lines = (job / "train.log").read_text().splitlines()
    start = datetime.strptime(lines[0][1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    (where,) = [line.split(", on ", 1)[1] for line in lines if "parameters, precision" in line]
    return start, (job / "results.json").stat().st_mtime, where


@pytest.mark.slow
def test_an_optuna_search_on_local_devices_runs_two_trials_at_once_each_on_its_own_core(workdir, tmp_path):
    import optuna

    sweep = tmp_path / "sweep"
    result = run_cli(
        "train.py", "-m", "hparams_search=optuna", "hydra/launcher=local_devices", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2", "hydra.launcher.devices=[0,1]", "trainer.max_epochs=1", "logger=csv",
        f"hydra.sweep.dir={sweep}", *SHORT, cwd=workdir,
    )  # fmt: skip
    assert_ok(result)
    study = optuna.load_study(study_name="alexnet_lr_weight_decay", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # one study, both trials in it
    (first_start, first_end, first_on), (second_start, second_end, second_on) = map(
        _job_span, sorted(p.parent for p in sweep.glob("*/train.log"))
    )
    assert first_start < second_end and second_start < first_end  # at the same time
    assert {first_on, second_on} == {"CPU cores 0 with 1 thread", "CPU cores 1 with 1 thread"}


@pytest.mark.slow
def test_a_failing_job_on_local_devices_hands_its_core_to_the_next_and_the_sweep_says_why(workdir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "train.py", "-m", "hydra/launcher=local_devices", "hydra.launcher.devices=[0,1]", "model.dropout=0.5,1.5,0.4",
        "trainer.max_epochs=1", "logger=csv", f"hydra.sweep.dir={sweep}", *SHORT, cwd=workdir,
        env={"HYDRA_FULL_ERROR": "0"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    # The model's own error, raised in its constructor (Hydra's instantiate wraps it), in the job's process.
    assert result.stderr.splitlines()[-1] == "error: model.dropout=1.5 is not valid; allowed values: 0 <= dropout < 1"
    finished = sorted(p.parent.name.split("@")[0] for p in sweep.glob("*/results.json"))
    assert finished == ["model.dropout-0.4", "model.dropout-0.5"]  # the job after the failed one ran too
    assert "Launching 3 jobs, 2 at once" in result.stdout + result.stderr
    assert (sweep / "report.md").is_file()  # the report of the jobs that ran


@pytest.mark.slow
def test_a_killed_job_on_local_devices_frees_its_core_and_the_sweep_says_how_to_go_on(workdir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    sweep = tmp_path / "sweep"
    command = [
        sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=local_devices", "hydra.launcher.devices=[0,1]",
        "seed=1,2,3", "trainer.max_epochs=2", "test=false", "logger=csv",
        f"hydra.sweep.dir={sweep}", *TINY_DATA,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    sweeping = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not list(sweep.glob("seed-1*/train.log")) and time.monotonic() < deadline:
        time.sleep(0.5)
    jobs = subprocess.run(["pgrep", "-P", str(sweeping.pid), "-f", "spawn_main"], capture_output=True, text=True)
    first = min(int(pid) for pid in jobs.stdout.split())  # job #0's process (seed=1), started first
    os.kill(first, signal.SIGKILL)
    _, err = sweeping.communicate(timeout=600)
    assert sweeping.returncode == 2, err[-3000:]
    assert err.splitlines()[-1].startswith("error: sweep job #0 (seed=1 ")
    assert (
        f"exit code -9 before reporting (killed, or out of memory?); run the sweep again with hydra.sweep.dir={sweep}"
        in err
    )
    assert sorted(p.parent.name.split("@")[0] for p in sweep.glob("*/results.json")) == ["seed-2", "seed-3"]
