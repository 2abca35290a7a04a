"""Results as people read them: a run's test table and worst classes, and a sweep's table next to the paper's claims.

A sweep's report is written to ``<sweep dir>/report.md`` when a multirun ends (the Hydra callback
in ``conf/hydra/default.yaml``), or on demand::

    python -m alexnet.report logs/train/multiruns/<date>_<time>

Jobs that differ only in ``seed`` are one row: the mean and standard deviation
of their errors. With a baseline row in the sweep (``experiment=baseline``, or no
experiment), each ablation's change of error is shown beside the paper's claim for it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from hydra.experimental.callback import Callback

if TYPE_CHECKING:
    from torch import Tensor

# What the paper's claims (ImageNet, alexnet-spec.md) predict for each job, in the
# report's own terms: the change of top-1 / top-5 error, ablation minus baseline.
CLAIMS = {
    "ablate_lrn": "Δ +1.4 / +1.2 without LRN (§3.3)",
    "ablate_overlap": "Δ +0.4 / +0.3 without overlap (§3.4)",
    "ablate_towers": "Δ +1.7 / +1.2 with one tower (§3.2)",
    "ablate_lighting": "Δ over +1 top-1 without PCA lighting (§4.1)",
    "ablate_dropout": "lower train error, more overfitting; half the iterations to converge (§4.2)",
    "ablate_relu": "25% train error 6x later with tanh (Figure 1)",
    "ablate_groups": "(not measured in the paper, §3.2)",
    "paper": "40.7 / 18.2 on ILSVRC-2012 val (Table 2)",
    "baseline": "(the reference for Δ)",
}
METRICS = ("test/ten_crop_top1_error", "test/ten_crop_top5_error", "test/centre_crop_top1_error")
BASELINES = ("baseline", "default")  # the same recipe as the ablations; "paper" may differ


def format_results(results: dict[str, float]) -> str:
    """The final table: top-1/top-5 error for the centre crop and the ten patches."""
    lines = [f"{'':14}{'top-1 error':>12}{'top-5 error':>13}"]
    for label, key in (("centre crop", "centre_crop"), ("10 patches", "ten_crop")):
        top1, top5 = results.get(f"test/{key}_top1_error"), results.get(f"test/{key}_top5_error")
        if top1 is not None:
            lines.append(f"{label:14}{top1:>11.2%}{top5:>13.2%}")
    return "\n".join(lines)


def format_worst_classes(errors: Tensor, names: list[str], count: int = 5) -> str:
    """The classes with the highest ten-patch top-1 error (none listed if all are right), named in words."""
    order = errors.nan_to_num(-1.0).argsort(descending=True)[:count].tolist()
    worst = ", ".join(f"{names[i]} {errors[i]:.1%}" for i in order if errors[i] > 0)
    return f"worst classes (10 patches, top-1 error): {worst or 'none, every image right'}"


def format_test_report(results: dict[str, float], class_errors: Tensor, class_names: list[str]) -> str:
    """The error table of a test run and its worst classes (printed by train.py and eval.py)."""
    return f"{format_results(results)}\n{format_worst_classes(class_errors, class_names)}"


def _job_label(overrides: list[str]) -> str:
    kept = [o for o in overrides if not o.startswith("seed=")]
    return " ".join(kept) or "default"


def collect(sweep_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Results of every finished job, grouped by their overrides other than the seed."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for results in sorted(sweep_dir.glob("*/results.json")):
        overrides_file = results.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        rows.setdefault(_job_label(overrides), []).append(json.loads(results.read_text()))
    return rows


def _experiment(label: str) -> str:
    for part in label.split():
        if part.startswith("experiment="):
            return part.split("=", 1)[1]
    return "default"


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def render(sweep_dir: Path) -> str:
    """The markdown report of ``sweep_dir``."""
    rows = collect(sweep_dir)
    values = {label: [[r[m] for r in runs if m in r] for m in METRICS] for label, runs in rows.items()}
    top1_mean = {label: statistics.fmean(v[0]) for label, v in values.items() if v[0]}
    baseline = next((label for label in rows if _experiment(label) in BASELINES), None)
    lines = [
        f"# Sweep {sweep_dir.name}",
        "",
        "Errors in %, mean ± std over seeds; 10 patches unless marked centre. "
        "Δ is this job's top-1 error minus the baseline's: positive means the ablated part helped.",
        "",
        "| job | seeds | top-1 | top-5 | top-1 (centre) | Δ top-1 vs baseline | paper's claim |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, runs in rows.items():
        top1, top5, centre = values[label]
        delta = "-"
        if baseline and label != baseline and label in top1_mean and baseline in top1_mean:
            delta = f"{100 * (top1_mean[label] - top1_mean[baseline]):+.2f}"
        claim = CLAIMS.get(_experiment(label), "")
        lines.append(
            f"| {label} | {len(runs)} | {_mean_std(top1)} | {_mean_std(top5)} | {_mean_std(centre)} | {delta} | {claim} |"
        )
    if baseline is None:
        lines += ["", "No baseline job in this sweep: add `experiment=baseline` to the sweep to see Δ."]
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: str | Path) -> Path | None:
    """Write ``report.md`` into the sweep folder if any job left results; returns its path."""
    sweep_dir = Path(sweep_dir)
    if not any(sweep_dir.glob("*/results.json")):
        return None
    path = sweep_dir / "report.md"
    path.write_text(render(sweep_dir))
    return path


class SweepReport(Callback):
    """Hydra callback: the report of a multirun, written when its last job ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        path = write_report(config.hydra.sweep.dir)
        if path is not None:
            print(f"Sweep report: {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a folder under logs/train/multiruns")
    path = write_report(parser.parse_args(argv).sweep_dir)
    print(path.read_text() if path else "no finished jobs (results.json) in that folder")


if __name__ == "__main__":
    main()
