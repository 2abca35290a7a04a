"""W&B dashboards as code: the definitions from a hand-made sweep folder, one-line errors, the report run."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT, closed_port
from PIL import Image
from wandb_records import summarize

from alexnet.results import dashboard, report
from alexnet.results.dashboard import main, read_sweep, wandb_config_key
from alexnet.results.report import TABLE_KEY, figure_key, log_report_run

SWEEP = "2026-11-28_15-46-00"
COLUMNS = ["experiment", "job", "seeds", "top-1 error", "top-5 error", "Δ top-1", "Δ top-1 95% CI", "agreement"]
ROWS = [
    ["baseline", "baseline", 2, 41.0, 19.0, None, None, "reference"],
    ["ablate_lrn", "ablate_lrn", 1, 42.5, 19.5, 1.5, "[-3.10, +6.10]", "✓ agrees in sign; within noise"],
]
FAILED = {"job": "experiment=ablate_lrn,seed=2-ae342364", "reason": "training diverged"}


def _job(sweep, experiment, seed, wandb_dir="offline-run-20261128_154631-abcd1234"):
    job = sweep / f"experiment={experiment},seed={seed}-ae342364"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"experiment={experiment}", f"seed={seed}", "trainer.max_epochs=3"])
    )
    (job / "wandb" / wandb_dir).mkdir(parents=True)
    return job


def make_sweep(root, online=False, report=True, **report_fields):
    """A sweep folder as train.py -m and python -m alexnet.results.report leave it: 2 experiments x 2 seeds."""
    sweep = root / SWEEP
    sweep.mkdir(parents=True)
    config = {
        "hydra": {
            "overrides": {"task": ["experiment=baseline,ablate_lrn", "seed=1,2", "trainer.max_epochs=3"]},
            "runtime": {
                "choices": {"experiment": None, "optimizer": "sgd", "data": "shapes", "hydra/launcher": "basic"}
            },
        },
        "logger": {"wandb": {"project": "lab-test", "mode": "auto"}},
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(config))
    for experiment in ("baseline", "ablate_lrn"):
        for seed in (1, 2):
            online_job = online and experiment == "baseline" and seed == 1
            _job(sweep, experiment, seed, "run-20261128_154631-abcd1234" if online_job else "offline-run-1-abcd1234")
    (sweep / "figures").mkdir()
    Image.new("RGB", (8, 6), "red").save(sweep / "figures" / "val_top1_per_epoch.png")
    job_figures = sweep / "experiment=baseline,seed=1-ae342364" / "figures"
    job_figures.mkdir()
    Image.new("RGB", (8, 6), "blue").save(job_figures / "fig3_conv1.png")
    if report:
        data = {
            "sweep": SWEEP,
            "project": "lab-test",
            "swept_keys": ["experiment", "seed"],
            "columns": COLUMNS,
            "rows": ROWS,
            # deltas.png was not drawn: listed, absent
            "figures": [
                "figures/val_top1_per_epoch.png",
                "figures/deltas.png",
                "experiment=baseline,seed=1-ae342364/figures/fig3_conv1.png",
            ],
            "failed": [FAILED],
        } | report_fields
        (sweep / "report.json").write_text(json.dumps(data, ensure_ascii=False))
    return sweep


def clean_env(tmp_path, **extra):
    """No W&B credentials anywhere, and a W&B server that is down: nothing may reach the network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env |= {"HOME": str(home), "NETRC": str(tmp_path / "no-netrc"), "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    env |= {"WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}", "WANDB_HTTP_TIMEOUT": "3"}
    return env | extra


def run_dashboard(*args, env, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "alexnet.results.dashboard", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The definitions, printed by the command with no credentials and no server."""
    tmp_path = tmp_path_factory.mktemp("dry_run")
    sweep = make_sweep(tmp_path)
    result = run_dashboard(sweep, "--dry-run", env=clean_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _sections(workspace):
    return {s["name"]: s["panels"] for s in workspace["spec"]["section"]["panelBankConfig"]["sections"]}


def _grids(report):
    return [b["metadata"] for b in report["spec"]["blocks"] if b["type"] == "panel-grid"]


def test_dry_run_prints_the_definitions_without_credentials_or_network(dry_run):
    assert (dry_run["entity"], dry_run["project"], dry_run["group"]) == (None, "lab-test", SWEEP)
    assert dry_run["workspace"]["project"] == "lab-test" and dry_run["workspace"]["entity"] is None
    assert dry_run["workspace"]["displayName"] == f"Sweep {SWEEP}"
    assert dry_run["report"]["project"] == {"name": "lab-test", "entityName": None}


def _group_and_job_type(job_type: str) -> list[dict]:
    """The run filters of the sweep's group and one W&B job type, as the spec holds them."""
    group = {"key": {"section": "run", "name": "group"}, "op": "=", "value": SWEEP, "disabled": False}
    kind = {"key": {"section": "run", "name": "jobType"}, "op": "=", "value": job_type, "disabled": False}
    return [group, {**kind, "connector": "AND"}]


def test_the_workspace_shows_the_sweeps_group_grouped_by_experiment(dry_run):
    section = dry_run["workspace"]["spec"]["section"]
    (runset,) = section["runSets"]
    # the training runs only: not the sweep's report run or the figures of offline runs
    assert runset["filters"]["filters"] == _group_and_job_type("train")
    assert runset["grouping"] == [{"section": "config", "name": "experiment.value"}]
    assert section["settings"]["shouldAutoGeneratePanels"] is False  # only the panels below
    assert section["settings"]["maxRuns"] >= 4  # the 4 jobs
    assert "config:config.value.seed" in runset["runFeed"]["columnPinned"]


def test_the_workspace_sections_hold_their_panels(dry_run):
    sections = _sections(dry_run["workspace"])
    assert list(sections) == ["Errors", "Learning rate and throughput", "Sweep", "Filters"]
    errors = [p["config"] for p in sections["Errors"]]
    assert all(p["viewType"] == "Run History Line Plot" for p in sections["Errors"])
    assert [c["metrics"] for c in errors] == [
        ["val/top1_error"],
        ["val/top5_error"],
        ["train/top1_error_epoch"],
        ["train/top5_error_epoch"],
    ]
    for config in errors:  # the mean over seeds of each experiment, with the band from the lowest to the highest
        assert (config["xAxis"], config["groupBy"], config["groupAgg"], config["groupArea"]) == (
            "epoch",
            "experiment.value",
            "mean",
            "minmax",
        )
        assert config["aggregate"] is True
    training = {tuple(p["config"]["metrics"]): p["config"] for p in sections["Learning rate and throughput"]}
    assert set(training) == {("lr-SGD", "lr-Adam"), ("train/device/samples_per_sec",), ("train/loss",)}
    lr = training[("lr-SGD", "lr-Adam")]
    assert lr["metricRegex"] == "^lr-" and lr["useMetricRegex"] is True  # lr-<any optimizer>
    assert all(c["xAxis"] == "trainer/global_step" and c["groupBy"] == "experiment.value" for c in training.values())

    parallel, comparer = sections["Sweep"]
    assert parallel["viewType"] == "Parallel Coordinates Plot"
    assert [c["accessor"] for c in parallel["config"]["columns"]] == [
        "config:experiment.value",  # a Hydra group choice: a top-level config key
        "config:config.value.seed",  # a value: under the resolved config the module logs as `config`
        "summary:val/top1_error",
        "summary:test/ten_crop_top1_error",
    ]
    assert comparer["viewType"] == "Run Comparer" and comparer["config"]["diffOnly"] is True
    (media,) = sections["Filters"]
    assert media["viewType"] == "Media Browser" and media["config"]["mediaKeys"] == ["conv1"]


def test_the_report_holds_the_table_the_figures_and_the_curves(dry_run):
    report = dry_run["report"]
    assert report["displayName"] == f"Sweep {SWEEP}"
    markdown = "\n".join(b["content"] for b in report["spec"]["blocks"] if b["type"] == "markdown-block")
    assert "| experiment | job | seeds | top-1 error |" in markdown
    assert "| baseline | baseline | 2 | 41.00 | 19.00 | - | - | reference |" in markdown  # null cells as "-"
    assert "| ablate_lrn | ablate_lrn | 1 | 42.50 | 19.50 | 1.50 | [-3.10, +6.10] | ✓ agrees" in markdown
    assert f"`{FAILED['job']}`: training diverged" in markdown

    grids = _grids(report)
    report_run = _group_and_job_type("report")
    on_report_run = [g for g in grids if g["runSets"][0]["filters"]["filters"] == report_run]
    table, figures = on_report_run
    assert f'"val": "{TABLE_KEY}"' in json.dumps(table["panelBankSectionConfig"]["panels"])  # the wandb.Table's key
    media = [p["config"]["mediaKeys"] for p in figures["panelBankSectionConfig"]["panels"]]
    # Each figure on disk by the key log_report_run logs it under; deltas.png was never drawn.
    assert media == [["sweep/val_top1_per_epoch"], ["sweep/experiment=baseline,seed=1-ae342364/fig3_conv1"]]

    on_runs = [g for g in grids if g not in on_report_run]
    for grid in on_runs:  # the sweep's runs, grouped by experiment
        (runset,) = grid["runSets"]
        assert [f["value"] for f in runset["filters"]["filters"]] == [SWEEP, "train"]
        assert runset["grouping"] == [{"section": "config", "name": "experiment.value"}]
    panels = [p for g in on_runs for p in g["panelBankSectionConfig"]["panels"]]
    metrics = {m for p in panels for m in p["config"].get("metrics", [])}
    assert {"val/top1_error", "train/top5_error_epoch", "lr-Adam", "train/loss"} <= metrics
    kinds = {p["viewType"] for p in panels}
    assert {"Parallel Coordinates Plot", "Run Comparer", "Media Browser"} <= kinds


def test_swept_keys_are_found_where_the_runs_log_them(tmp_path):
    groups = dashboard.config_groups(make_sweep(tmp_path))
    assert groups == {"experiment", "optimizer", "data"}
    assert wandb_config_key("experiment", groups) == "experiment"
    assert wandb_config_key("+optimizer", groups) == "optimizer"
    assert wandb_config_key("seed", groups) == "config.seed"
    assert wandb_config_key("optimizer.lr", groups) == "config.optimizer.lr"


def test_runs_are_grouped_by_every_swept_key_but_the_seed(tmp_path):
    sweep = read_sweep(make_sweep(tmp_path / "a", swept_keys=["optimizer.lr", "seed"]))
    assert sweep.group_by == ["config.optimizer.lr"]
    assert read_sweep(make_sweep(tmp_path / "b", swept_keys=["seed"])).group_by == ["experiment"]  # seeds alone
    # report.json without swept keys: read from the jobs' overrides
    assert list(read_sweep(make_sweep(tmp_path / "c", swept_keys=[])).config_keys) == ["experiment", "seed"]


def test_project_and_entity_come_from_the_sweep_unless_given(tmp_path):
    folder = make_sweep(tmp_path)
    sweep = read_sweep(folder)
    assert (sweep.project, sweep.entity, sweep.group, sweep.jobs) == ("lab-test", None, SWEEP, 4)
    config = yaml.safe_load((folder / "multirun.yaml").read_text())
    config["logger"]["wandb"]["entity"] = "team"
    (folder / "multirun.yaml").write_text(yaml.safe_dump(config))
    assert (read_sweep(folder).project, read_sweep(folder).entity) == ("lab-test", "team")
    assert (read_sweep(folder, entity="me", project="other").entity, read_sweep(folder, project="other").project) == (
        "me",
        "other",
    )


def test_figure_keys_tell_the_jobs_figures_apart():
    assert figure_key("figures/deltas.png") == "sweep/deltas"
    keys = {figure_key(f"experiment={e},seed=1-ae342364/figures/fig3_conv1.png") for e in ("baseline", "ablate_lrn")}
    assert keys == {
        "sweep/experiment=baseline,seed=1-ae342364/fig3_conv1",
        "sweep/experiment=ablate_lrn,seed=1-ae342364/fig3_conv1",
    }


def test_without_report_json_the_command_says_to_write_it(tmp_path, capsys):
    sweep = make_sweep(tmp_path, report=False)
    with pytest.raises(SystemExit) as exit:
        main([str(sweep), "--dry-run"])
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip()
    assert (
        error == f"error: {sweep / 'report.json'} does not exist: run `python -m alexnet.results.report {sweep}` first"
    )


def test_without_wandb_workspaces_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    for name in [n for n in sys.modules if n.startswith("wandb_workspaces")] + ["wandb_workspaces"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import wandb_workspaces...` raises ImportError
    with pytest.raises(SystemExit) as exit:
        main([str(make_sweep(tmp_path)), "--dry-run"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {dashboard.NEEDS_PACKAGE}"


def test_without_credentials_the_command_says_so_in_one_line(tmp_path):
    result = run_dashboard(make_sweep(tmp_path), env=clean_env(tmp_path))
    assert result.returncode == 2
    assert one_error_line(result) == f"error: {dashboard.NO_CREDENTIALS}"
    assert result.stdout == ""


def test_an_unreachable_server_is_one_line_within_seconds(tmp_path):
    env = clean_env(tmp_path, WANDB_API_KEY="0" * 40)  # WANDB_HTTP_TIMEOUT=3 (19 s by default)
    start = time.monotonic()
    result = run_dashboard(make_sweep(tmp_path), env=env)
    assert time.monotonic() - start < 60  # wandb's service would retry for many minutes at exit
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("error: W&B could not check the credentials (") and env["WANDB_BASE_URL"] in line
    assert not (tmp_path / SWEEP / "wandb").exists()  # nothing logged before the server answered


REPORT_RUN = """
import json, sys
from alexnet.results.report import log_report_run
sweep = sys.argv[1]
print("run id:", log_report_run(sweep, json.load(open(sweep + "/report.json"))))
"""


def test_an_online_sweeps_report_run_holds_the_table_and_figures(tmp_path):
    sweep = make_sweep(tmp_path, online=True)
    env = clean_env(tmp_path, WANDB_MODE="offline", WANDB_SILENT="true")  # offline: no server here
    result = subprocess.run(
        [sys.executable, "-c", REPORT_RUN, str(sweep)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = result.stdout.split("run id:")[1].strip()
    (path,) = sweep.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")  # what `wandb sync` uploads
    records = summarize(path)
    run = records["run"]
    assert (run.run_group, run.job_type) == (SWEEP, "report")
    (row,) = records["history"]
    assert json.loads(row[f"{TABLE_KEY}/_type"]) == "table-file"
    assert json.loads(row["sweep/val_top1_per_epoch/_type"]) == "image-file"
    assert json.loads(row["sweep/experiment=baseline,seed=1-ae342364/fig3_conv1/_type"]) == "image-file"
    (table,) = path.parent.glob("files/media/table/sweep/report_table_*.table.json")
    logged = json.loads(table.read_text())
    assert (logged["columns"], logged["data"]) == (COLUMNS, ROWS)


def test_an_offline_sweep_gets_no_report_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = make_sweep(tmp_path)  # every job logged offline-run-*
    assert not report.online_sweep(sweep)
    assert log_report_run(sweep, json.loads((sweep / "report.json").read_text())) is None
    assert not (sweep / "wandb").exists()


def test_the_report_run_never_raises(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = make_sweep(tmp_path, online=True)
    (sweep / "figures" / "val_top1_per_epoch.png").write_text("not a PNG")
    report = json.loads((sweep / "report.json").read_text())
    assert log_report_run(sweep, report) is None
    assert "The sweep's report run was not logged to W&B" in caplog.text
    assert log_report_run(sweep, {"sweep": SWEEP}) is None  # no table at all
