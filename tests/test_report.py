"""The sweep report: seeds pooled, deltas against the baseline, the paper's claims beside them."""

import json

import yaml

from alexnet.report import render, write_report


def _job(sweep, num, overrides, top1, top5):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    results = {"test/ten_crop_top1_error": top1, "test/ten_crop_top5_error": top5, "test/centre_crop_top1_error": top1}
    (job / "results.json").write_text(json.dumps(results))


def test_report_pools_seeds_and_compares_with_the_baseline(tmp_path):
    sweep = tmp_path / "2026-01-01_00-00-00"
    _job(sweep, 0, ["experiment=baseline", "seed=1"], 0.40, 0.18)
    _job(sweep, 1, ["experiment=baseline", "seed=2"], 0.42, 0.20)
    _job(sweep, 2, ["experiment=ablate_lrn", "seed=1"], 0.43, 0.19)
    _job(sweep, 3, ["experiment=ablate_lrn", "seed=2"], 0.43, 0.21)
    (sweep / "4").mkdir()  # a job that died before writing results
    text = render(sweep)
    baseline = next(line for line in text.splitlines() if line.startswith("| experiment=baseline "))
    lrn = next(line for line in text.splitlines() if line.startswith("| experiment=ablate_lrn "))
    assert "| 2 | 41.00 ± 1.41 | 19.00 ± 1.41 |" in baseline
    assert "| +2.00 |" in lrn and "Δ +1.4 / +1.2" in lrn  # 43% vs 41%, beside the paper's claim
    assert write_report(sweep) == sweep / "report.md" and (sweep / "report.md").read_text() == text


def test_no_results_no_report(tmp_path):
    assert write_report(tmp_path) is None
