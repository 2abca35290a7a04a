"""The sweep report: seeds pooled with intervals, paired deltas against the baseline, the paper's claims beside them."""

import base64
import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import SHORT, assert_ok, run_cli, run_module
from PIL import Image
from wandb_records import summarize as read_wandb_run

from alexnet.results.dashboard import definitions, read_sweep
from alexnet.results.report import render, write_report
from alexnet.results.sweep import summarize


def _job(sweep, name, overrides, top1=None, top5=0.2, log=""):
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, "trainer.max_epochs=3"]))
    if top1 is not None:
        results = {"test/ten_crop_top1_error": top1, "test/ten_crop_top5_error": top5}
        results |= {"test/centre_crop_top1_error": top1 + 0.01, "test/centre_crop_top5_error": top5 + 0.01}
        (job / "results.json").write_text(json.dumps(results))
        rows = ["epoch,step,val/top1_error", f"0,9,{top1 + 0.1}", f"1,19,{top1}"]
        (job / "metrics.csv").write_text("\n".join(rows) + "\n")
    (job / "train.log").write_text(log)


def _sweep(tmp_path):
    sweep = tmp_path / "2026-01-01_00-00-00"
    task = ["experiment=baseline,ablate_lrn", "seed=1,2,3", "trainer.max_epochs=3"]
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    _job(sweep, "b1", ["experiment=baseline", "seed=1"], 0.40, 0.18)
    _job(sweep, "b2", ["experiment=baseline", "seed=2"], 0.42, 0.20)
    _job(sweep, "b3", ["experiment=baseline", "seed=3"], 0.42, 0.20)
    _job(sweep, "l1", ["experiment=ablate_lrn", "seed=1"], 0.43, 0.19)
    _job(sweep, "l2", ["experiment=ablate_lrn", "seed=2"], 0.44, 0.21)
    _job(sweep, "l3", ["experiment=ablate_lrn", "seed=3"], log="error: training diverged: the loss became nan")
    return sweep


def test_the_report_pools_seeds_and_compares_with_the_baseline(tmp_path):
    sweep = _sweep(tmp_path)
    text = render(summarize(sweep))
    lines = text.splitlines()
    baseline = next(line for line in lines if line.startswith("| baseline |"))
    lrn = next(line for line in lines if line.startswith("| ablate_lrn |") and "Δ" not in line and "±" in line)
    assert "| 3 | 41.33 ± 1.15 [38.46, 44.20] |" in baseline  # labelled by experiment alone, seeds pooled
    assert "| 2 | 43.50 ± 0.71 [37.15, 49.85] |" in lrn  # the diverged seed is not pooled
    delta = next(line for line in lines if line.startswith("| ablate_lrn |") and "paper" not in line and "+1.4" in line)
    # Seeds 1 and 2 against seeds 1, 2 and 3: not the same seeds, so Welch's interval.
    assert "| +2.17 [" in delta and "no (Welch)" in delta and "✓ agrees in sign" in delta
    assert "+1.4 / +1.2" in delta and "Δ +1.4 / +1.2 without LRN (§3.3)" in delta
    assert "`l3`: training diverged (see its train.log)" in text
    assert "trainer.max_epochs" not in text  # the same for every job: never part of a label


def test_labels_name_the_swept_keys_and_deltas_pair_within_them(tmp_path):
    sweep = tmp_path / "sweep"
    for lr, shift in (("0.01", 0.0), ("0.02", 0.1)):
        for seed, noise in (("1", 0.0), ("2", 0.02)):
            _job(
                sweep,
                f"b{lr}{seed}",
                ["experiment=baseline", f"seed={seed}", f"optimizer.lr={lr}"],
                0.4 + shift + noise,
            )
            _job(
                sweep,
                f"o{lr}{seed}",
                ["experiment=ablate_overlap", f"seed={seed}", f"optimizer.lr={lr}"],
                0.41 + shift + noise,
            )
    rows = {row.label: row for row in summarize(sweep).rows}
    assert set(rows) == {f"{e} optimizer.lr={lr}" for e in ("baseline", "ablate_overlap") for lr in ("0.01", "0.02")}
    for lr in ("0.01", "0.02"):
        row = rows[f"ablate_overlap optimizer.lr={lr}"]
        assert row.baseline == f"baseline optimizer.lr={lr}"
        delta = row.deltas["top-1 error"]
        assert delta.paired and delta.mean == pytest.approx(1.0) and delta.std == pytest.approx(0.0, abs=1e-9)


def test_missing_jobs_of_a_grid_are_listed(tmp_path):
    sweep = _sweep(tmp_path)
    (sweep / "b3").rename(tmp_path / "elsewhere")  # seed 3 of the baseline never started
    summary = summarize(sweep)
    assert summary.missing == [{"experiment": "baseline", "seed": "3"}]
    text = render(summary)
    assert "`experiment=baseline,seed=3`: never started" in text
    assert f"hydra.sweep.dir={sweep}" in text  # how to finish the sweep


def test_write_report_writes_markdown_html_and_json(tmp_path):
    sweep = _sweep(tmp_path)
    assert write_report(sweep) == sweep / "report.md"
    data = json.loads((sweep / "report.json").read_text())
    assert data["sweep"] == sweep.name and data["swept_keys"] == ["experiment", "seed"]
    rows = {row[1]: dict(zip(data["columns"], row, strict=True)) for row in data["rows"]}
    assert rows["ablate_lrn"]["top-1 error"] == pytest.approx(43.5) and rows["ablate_lrn"]["seeds"] == 2
    assert rows["ablate_lrn"]["paper's Δ top-1"] == 1.4 and rows["baseline"]["agreement"] == "reference"
    assert data["failed"] == [{"job": "l3", "reason": "training diverged (see its train.log)"}]
    assert data["figures"] == ["figures/val_top1_per_epoch.png", "figures/deltas.png"]
    html = (sweep / "report.html").read_text()
    assert "<table>" in html and "ablate_lrn" in html
    _assert_embeds(html, [sweep / f for f in data["figures"]])


def test_odd_sweeps_still_get_a_report(tmp_path):
    """One seed each, a NaN written by an older run, no test results: rows and marks that say so."""
    sweep = tmp_path / "sweep"
    _job(sweep, "b", ["experiment=baseline"], 0.40)
    _job(sweep, "l", ["experiment=ablate_lrn"], 0.42)
    _job(sweep, "o", ["experiment=ablate_overlap"], float("nan"))
    rows = {row.label: row for row in summarize(sweep).rows}
    assert rows["ablate_overlap"].errors["top-1 error"] is None and rows["ablate_overlap"].best_job() is None
    text = render(summarize(sweep))
    assert "| +2.00 - |" in text and "| one seed |" in text and "no interval from one seed" in text
    for job in sweep.iterdir():  # test=false: only the best validation error
        (job / "results.json").write_text(json.dumps({"best/val_top1_error": 0.3, "val/top1_error": 0.35}))
    untested = summarize(sweep)
    assert list(untested.metrics) == ["top-1 error"] and untested.rows[0].errors["top-1 error"].mean == 30.0
    assert "No job was tested (`test=false`)" in render(untested)


def test_without_results_the_best_checkpoint_is_the_one_its_run_recorded(tmp_path):
    """Lightning's ModelCheckpoint state in the newest checkpoint names the best so far, wherever the folder went."""
    import os

    from alexnet.results.sweep import Job, best_checkpoint

    folder = tmp_path / "job" / "checkpoints"
    folder.mkdir(parents=True)
    best = "epoch_001-top1_error_0.2500-v1.ckpt"  # Lightning's -v1 for a repeated name
    state = {"monitor": "val/top1_error", "best_model_path": f"/where/it/trained/checkpoints/{best}"}
    for age, name in enumerate(("last.ckpt", "epoch_000-top1_error_0.2000.ckpt", best)):  # the newest first
        torch.save({"callbacks": {"ModelCheckpoint{'monitor': 'val/top1_error'}": state}}, folder / name)
        os.utime(folder / name, (1e9 - age, 1e9 - age))
    assert best_checkpoint(Job(tmp_path / "job", {})) == folder / best
    (folder / best).unlink()  # recorded but gone: the last checkpoint
    assert best_checkpoint(Job(tmp_path / "job", {})) == folder / "last.ckpt"


def test_no_jobs_no_report(tmp_path):
    assert write_report(tmp_path) is None
    result = run_module("alexnet.results.report", tmp_path, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def assert_real_image(path):
    """A PNG that opens, of a useful size, and not blank: many distinct colours over its area."""
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 200 and image.shape[1] > 300, (path, image.shape)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, path
    assert image.std() > 10, path


def _assert_embeds(html, figures):
    embedded = [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    assert embedded == [f.read_bytes() for f in figures]
    assert not re.findall(r'(?:src|href)="(?!data:)', html)  # nothing to fetch: it opens offline


@pytest.mark.slow
def test_a_demo_sweep_gives_reports_figures_and_wandb_records(tmp_path):
    """Two experiments x two seeds on the demo data: report.md/html/json and every figure, drawn and logged."""
    result = run_cli(
        "train.py", "-m", "experiment=baseline,ablate_relu", "seed=1,2", "trainer.max_epochs=2", *SHORT, cwd=tmp_path
    )
    assert_ok(result)
    sweep = next((tmp_path / "logs" / "train" / "multiruns").iterdir())
    records = [read_wandb_run(f) for f in sorted(sweep.glob("*/wandb/offline-run-*/run-*.wandb"))]
    runs = [record["run"] for record in records]
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4 and {r.run_group for r in runs} == {sweep.name}
    # Each run names its experiment in its W&B config: what the dashboard groups by.
    assert sorted(json.loads(r["config"]["experiment"]) for r in records) == ["ablate_relu"] * 2 + ["baseline"] * 2
    data = json.loads((sweep / "report.json").read_text())  # written when the sweep ended
    assert [row[1] for row in data["rows"]] == ["baseline", "ablate_relu"] and data["failed"] == []
    assert data["figures"] == ["figures/val_top1_per_epoch.png", "figures/deltas.png", "figures/fig1_relu_vs_tanh.png"]
    report = (sweep / "report.md").read_text()
    assert "| baseline | 2 |" in report and "| ablate_relu | 2 |" in report and "seed=" not in report
    assert "yes" in report.split("| ablate_relu | ")[2]  # the Δ paired seed by seed
    assert "(the paper: 6x, on CIFAR-10)" in report

    # A job's folder is a run's; its data moved: one line that names the option to point at it.
    job = sorted(sweep.glob("*/results.json"))[0].parent
    (tmp_path / "data").rename(tmp_path / "moved")
    moved = run_module("alexnet.results.figures", job, cwd=tmp_path)
    assert moved.returncode == 2 and moved.stderr.startswith("error: the run's data ") and "--data-root" in moved.stderr
    (tmp_path / "moved").rename(tmp_path / "data")
    # The sweep: the best seed of each experiment, and the report again.
    assert_ok(run_module("alexnet.results.figures", sweep, "--max-train-images", "16", cwd=tmp_path))
    data = json.loads((sweep / "report.json").read_text())  # the report again, now with the checkpoints' figures
    per_job = [f for f in data["figures"] if not f.startswith("figures/")]
    assert len(per_job) == 6 and {f.rsplit("/", 1)[1] for f in per_job} == {
        "fig3_conv1.png", "fig4_predictions.png", "fig4_neighbours.png"
    }  # fmt: skip
    figures = [sweep / f for f in data["figures"]]
    for figure in figures:
        assert_real_image(figure)
    _assert_embeds((sweep / "report.html").read_text(), figures)
    workspace = definitions(read_sweep(sweep))["workspace"]  # the dashboard of this very sweep
    assert workspace["spec"]["section"]["runSets"][0]["grouping"] == [{"section": "config", "name": "experiment.value"}]
    # Each best seed's W&B run is offline, which cannot be resumed safely: its figures are in an
    # offline run of their own beside it, in the sweep's group.
    drawn = ["fig3_conv1.png", "fig4_neighbours.png", "fig4_predictions.png"]
    for job in {f.parent.parent for f in figures if f.parent.parent != sweep}:
        assert sorted(p.name for p in (job / "figures").iterdir()) == drawn
        run, figures_run = sorted((job / "wandb").glob("offline-run-*"))
        record = read_wandb_run(next(figures_run.glob("run-*.wandb")))
        assert (record["run"].run_group, record["run"].job_type) == (sweep.name, "figures")
        assert record["run"].display_name == f"{job.name}: figures"
        assert json.loads(record["config"]["figures_of"]) == run.name.rsplit("-", 1)[1]  # the run they belong to
        logged = figures_run.glob("files/media/images/figures/*.png")
        assert sorted(p.name.rsplit("_", 2)[0] + ".png" for p in logged) == drawn


def test_worst_classes_skip_perfect_and_absent_classes():
    from alexnet.results.console import format_worst_classes

    errors = torch.tensor([0.1, 0.0, float("nan"), 0.3])
    assert format_worst_classes(errors, ["cat", "dog", "fox", "cow"]).endswith(": cow 30.0%, cat 10.0%")
    assert format_worst_classes(torch.zeros(2), ["cat", "dog"]).endswith("none, every image right")


def _fig1_job(sweep, name, activation, seed, errors, seconds_per_epoch=10.0):
    """A cifar_fig1 job: its epoch training errors (and the training time at each epoch end) in metrics.csv."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    overrides = ["experiment=cifar_fig1", f"model.activation={activation}", f"seed={seed}"]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"model": {"num_classes": 10}}))  # chance: 90%
    rows = ["epoch,step,train/top1_error_epoch,train/time"]
    rows += [f"{e},{10 * e + 9},{error},{seconds_per_epoch * (e + 1)}" for e, error in enumerate(errors)]
    (job / "metrics.csv").write_text("\n".join(rows) + "\n")
    (job / "results.json").write_text(json.dumps({"train/top1_error_epoch": errors[-1]}))


def test_figure_1s_sweep_reports_the_speed_up_seed_by_seed_beside_the_papers(tmp_path):
    sweep = tmp_path / "fig1"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["seed=1,2"]}}}))
    _fig1_job(sweep, "r1", "relu", 1, [0.5, 0.3, 0.2])  # 25% at 2.5 epochs (chance, 0.5, 0.3, 0.2)
    _fig1_job(sweep, "t1", "tanh", 1, [0.7, 0.6, 0.5, 0.4, 0.3, 0.2])  # at 5.5: 2.2x
    _fig1_job(sweep, "r2", "relu", 2, [0.5, 0.2], seconds_per_epoch=12.0)  # at 1 + 0.25 / 0.3 epochs
    _fig1_job(sweep, "t2", "tanh", 2, [0.6, 0.4, 0.3, 0.25], seconds_per_epoch=12.0)  # at 4: 2.18x
    result = summarize(sweep)
    text = render(result)
    assert "## Figure 1: ReLU against tanh" in text and "No baseline" not in text
    speedup = (2.2 * 4 / (1 + 0.25 / 0.3)) ** 0.5  # the geometric mean of the two seeds' ratios
    line = next(line for line in text.splitlines() if line.startswith("| speed-up"))
    assert f"| 2 paired | {speedup:.1f}x [" in line and "| 6x (§3.1) |" in line
    assert "| ReLU (solid) | 2 | 2.2 ± 0.5 epochs |" in text  # 2.5 and 1.83
    from alexnet.results.figures import figure1_speedup

    measured = figure1_speedup(result.rows)
    assert measured.epochs.mean == pytest.approx(speedup) and measured.epochs.low < speedup < measured.epochs.high
    assert measured.seconds.mean == pytest.approx(speedup)  # the same epochs' lengths for both nets of a seed
    path = write_report(sweep)
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["figure1"]["speedup_epochs"]["mean"] == pytest.approx(speedup)
    assert (sweep / "figures" / "fig1_relu_vs_tanh.png").is_file()
    from alexnet.results.figures import relu_vs_tanh

    # each seed stops at its own epoch: the figure states the seed-by-seed speed-up, not a mean curve's
    line = relu_vs_tanh(result.rows, tmp_path / "fig1.png")
    assert f"2 ReLU and 2 tanh seeds: tanh / ReLU {speedup:.1f}x [" in line
    # a tanh seed that never gets there gives a bound, not a ratio
    _fig1_job(sweep, "r3", "relu", 3, [0.5, 0.2])
    _fig1_job(sweep, "t3", "tanh", 3, [0.8, 0.7, 0.6])
    measured = figure1_speedup(summarize(sweep).rows)
    assert measured.epochs.n == 2 and measured.bounds == [pytest.approx(3 / (1 + 0.25 / 0.3))]
    text = render(summarize(sweep))
    assert "(not reached by 1 seed); 60.0% after 3 epochs" in text  # where the seed that never got there ended


def test_the_cifar_lrn_pair_is_compared_with_its_own_reference(tmp_path):
    sweep = tmp_path / "lrn"
    sweep.mkdir()
    task = ["experiment=cifar_lrn,cifar_ablate_lrn", "seed=1,2"]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    _job(sweep, "l1", ["experiment=cifar_lrn", "seed=1"], 0.11)
    _job(sweep, "l2", ["experiment=cifar_lrn", "seed=2"], 0.12)
    _job(sweep, "a1", ["experiment=cifar_ablate_lrn", "seed=1"], 0.13)
    _job(sweep, "a2", ["experiment=cifar_ablate_lrn", "seed=2"], 0.15)
    result = summarize(sweep)
    rows = {row.experiment: row for row in result.rows}
    assert [row.experiment for row in result.rows] == ["cifar_lrn", "cifar_ablate_lrn"]  # the reference first
    assert rows["cifar_ablate_lrn"].baseline == "cifar_lrn"
    assert rows["cifar_ablate_lrn"].deltas["top-1 error"].mean == pytest.approx(2.5) and result.has_baseline
    text = render(result)
    assert "| cifar_lrn | reference |" in text
    line = next(line for line in text.splitlines() if line.startswith("| cifar_ablate_lrn | +2.50"))
    assert "+2 (13% vs 11%)" in line and "agrees in sign" in line


def test_with_a_learning_rate_swept_each_activation_takes_its_fastest(tmp_path):
    sweep = tmp_path / "search"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["optimizer.lr=0.1,0.2"]}}}))
    for lr, relu, tanh in ((0.1, [0.5, 0.2], [0.8, 0.6, 0.4, 0.2]), (0.2, [0.3, 0.2], [0.8, 0.7, 0.6, 0.5])):
        for activation, errors in (("relu", relu), ("tanh", tanh)):
            _fig1_job(sweep, f"{activation}{lr}", activation, 1, errors)
            overrides = sweep / f"{activation}{lr}" / ".hydra" / "overrides.yaml"
            overrides.write_text(yaml.safe_dump([*yaml.safe_load(overrides.read_text()), f"optimizer.lr={lr}"]))
    from alexnet.results.figures import figure1_speedup

    measured = figure1_speedup(summarize(sweep).rows)
    assert measured.relu_row.jobs[0].swept["optimizer.lr"] == "0.2"  # 25% at 1.5 epochs against 1.83
    assert measured.tanh_row.jobs[0].swept["optimizer.lr"] == "0.1"  # the other never gets there
    assert len(measured.search) == 4 and measured.epochs.mean == pytest.approx(3.75 / 1.5)
    text = render(summarize(sweep))
    assert "the fastest to 25% of those swept" in text and text.count("| ✓ |") == 2
    assert "(not reached by 1 seed)" in text
    # neither tanh rate gets there: the one that came closest is chosen, and the speed-up is a bound
    for lr, errors in (("0.1", [0.8, 0.6, 0.4, 0.3]), ("0.2", [0.8, 0.7, 0.6, 0.5])):
        shutil.rmtree(sweep / f"tanh{lr}")
        _fig1_job(sweep, f"tanh{lr}", "tanh", 1, errors)
        overrides = sweep / f"tanh{lr}" / ".hydra" / "overrides.yaml"
        overrides.write_text(yaml.safe_dump([*yaml.safe_load(overrides.read_text()), f"optimizer.lr={lr}"]))
    measured = figure1_speedup(summarize(sweep).rows)
    assert measured.tanh_row.jobs[0].swept["optimizer.lr"] == "0.1" and measured.epochs is None
    assert measured.bounds == [pytest.approx(4 / 1.5)]
