"""A multirun's folder as data: its jobs, their results and logs, and its rows pooled over seeds with statistics.

The report (:mod:`alexnet.report`), the figures (:mod:`alexnet.figures`) and the W&B dashboard
(:mod:`alexnet.dashboard`) all read a sweep through this module. A sweep folder holds
``multirun.yaml`` (the sweep's Hydra config) and one folder per job with ``.hydra/overrides.yaml``,
``metrics.csv`` (the CSV logger), ``checkpoints/`` and, once the job finished, ``results.json``.

Jobs that differ only in ``seed`` are one :class:`Row`: the mean, standard deviation and a 95%
confidence interval (Student's t) of their errors. A row's Δ is its error minus the baseline's
(``experiment=baseline``) with the same other swept values: paired seed by seed when both ran the
same seeds, else Welch's interval. Beside it, what the paper claims (:data:`CLAIMS`).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

BASELINES = ("baseline", "default")  # the same recipe as the ablations; "paper" may differ
NOT_LABELS = ("seed", "experiment")  # the label is the experiment and the other swept keys: seeds pool


@dataclass
class Job:
    """One job of a sweep (or a single run's folder)."""

    folder: Path
    overrides: dict[str, str]  # every task override, key -> value as typed
    results: dict[str, Any] | None = None  # results.json; None: failed, interrupted or still running
    swept: dict[str, str] = field(default_factory=dict)  # the overrides whose values differ between jobs

    @property
    def experiment(self) -> str:
        return self.overrides.get("experiment", "default")

    @property
    def seed(self) -> str | None:
        return self.overrides.get("seed")

    @property
    def label(self) -> str:
        """The experiment and the swept keys that tell its row apart; never the seed."""
        others = [f"{k}={v}" for k, v in sorted(self.swept.items()) if k not in NOT_LABELS]
        return " ".join([self.experiment, *others])

    @property
    def comparable(self) -> tuple[tuple[str, str], ...]:
        """The swept values other than experiment and seed: an ablation is compared with the baseline sharing them."""
        return tuple(sorted((k, v) for k, v in self.swept.items() if k not in NOT_LABELS))

    @cached_property
    def metrics(self) -> list[dict[str, float]]:
        return read_metrics(self.folder / "metrics.csv")

    def failure(self) -> str:
        """Why a job without results.json has none, from its log."""
        logs = sorted(self.folder.glob("*.log"))
        text = "\n".join(p.read_text(errors="replace") for p in logs)
        if "training diverged" in text:
            return "training diverged (see its train.log)"
        if "Traceback" in text or "error: " in text:
            return "failed with an error (see its train.log)"
        return "did not finish: interrupted, or still running"


def _overrides(folder: Path) -> dict[str, str]:
    listed = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(item.lstrip("+~").split("=", 1) for item in listed if "=" in item)


def _results(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return None


def read_jobs(sweep_dir: str | Path) -> list[Job]:
    """Every job folder of the sweep (finished or not), each with the overrides it swept."""
    folders = sorted(p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/overrides.yaml"))
    jobs = [Job(folder, _overrides(folder), _results(folder)) for folder in folders]
    keys = {key for job in jobs for key in job.overrides}
    swept = {key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1}
    if "experiment" in keys:  # one experiment swept alone still names its rows
        swept.add("experiment")
    for job in jobs:
        job.swept = {k: job.overrides[k] for k in sorted(swept) if k in job.overrides}
    return jobs


def read_job(run_dir: str | Path) -> Job:
    """A single run's folder (``logs/train/runs/<time>``) as a job of its own."""
    folder = Path(run_dir)
    overrides = _overrides(folder) if (folder / ".hydra" / "overrides.yaml").is_file() else {}
    return Job(folder, overrides, _results(folder))


def sweep_config(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep's Hydra config (``multirun.yaml``), or {} when the folder has none."""
    path = Path(sweep_dir) / "multirun.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _grid(sweep_dir: str | Path) -> bool:
    """Whether the sweep is a grid (Hydra's basic sweeper), whose jobs a second run finds again."""
    sweeper = (sweep_config(sweep_dir).get("hydra") or {}).get("sweeper") or {}
    return "BasicSweeper" in str(sweeper.get("_target_", "BasicSweeper"))


def missing_jobs(sweep_dir: str | Path, jobs: list[Job]) -> list[dict[str, str]]:
    """The points of a grid sweep that have no folder: the sweep stopped before it started them.

    The grid is the product of each swept key's values: listed or ``range``'d in the sweep's command
    line, or, for ``glob`` sweeps, those seen. Optuna and other sweepers have no grid: none are missing.
    """
    hydra = sweep_config(sweep_dir).get("hydra") or {}
    if not _grid(sweep_dir):
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    values: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(hydra.get("overrides", {}).get("task", [])):
        key = override.get_key_element().lstrip("+~")
        if override.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP, ValueType.RANGE_SWEEP):
            values[key] = list(override.sweep_string_iterator())
        elif override.is_sweep_override():
            values[key] = sorted({job.overrides[key] for job in jobs if key in job.overrides})
    if not values:
        return []
    seen = {tuple(job.overrides.get(k) for k in values) for job in jobs}
    grid = itertools.product(*values.values())
    return [dict(zip(values, point, strict=True)) for point in grid if point not in seen]


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The CSV logger's rows, each with only the values it holds (``step`` and ``epoch`` included)."""
    try:
        with open(path, newline="") as file:
            return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(file)]
    except OSError:
        return []


def per_epoch(metrics: list[dict[str, float]], key: str) -> dict[int, float]:
    """The value ``key`` took at each epoch (the last logged, if a resumed run logged it twice)."""
    values: dict[int, float] = {}
    for row in metrics:
        if key in row and "epoch" in row and math.isfinite(row[key]):
            values[int(row["epoch"])] = row[key]
    return dict(sorted(values.items()))


def best_checkpoint(job: Job) -> Path | None:
    """The checkpoint the job was tested with: the best by validation error, else its last."""
    recorded = (job.results or {}).get("best/checkpoint")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    folder = job.folder / "checkpoints"
    if recorded and (folder / Path(recorded).name).is_file():  # the sweep folder was moved or copied
        return folder / Path(recorded).name
    scores = {p: re.search(r"top1_error_([0-9.]+?)(?:-v\d+)?$", p.stem) for p in folder.glob("epoch_*.ckpt")}
    scored = sorted((float(m.group(1)), p.name, p) for p, m in scores.items() if m)  # Lightning adds -v1 to repeats
    if scored:
        return scored[0][2]
    last = folder / "last.ckpt"
    return last if last.is_file() else None


# Statistics -----------------------------------------------------------------------------------------

# Student's t, two-sided 95% (the 0.975 quantile), by degrees of freedom; the fractional rows are
# for Welch's df, which lies between 1 and 2 with two seeds on each side.
T_975 = {
    1: 12.706, 1.25: 8.028, 1.5: 6.017, 1.75: 4.949, 2: 4.303, 2.5: 3.575, 3: 3.182, 3.5: 2.940, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
    20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
    29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980, math.inf: 1.960,
}  # fmt: skip


def t_975(df: float) -> float:
    """The t quantile for ``df`` degrees of freedom (Welch's are fractional): the table, linear in 1/df between.

    Measured against scipy's: at most 3% above it between df 1 and 4 (an interval a little wide), within
    0.12% beyond, and never more than the table's rounding (0.02%) below.
    """
    if df < 1:
        raise ValueError(f"a t interval needs at least 1 degree of freedom, got {df}")
    below = max(d for d in T_975 if d <= df)
    above = min(d for d in T_975 if d >= df)
    if below == above:
        return T_975[below]
    weight = (1 / below - 1 / df) / (1 / below - 1 / above)  # 1 / inf == 0
    return T_975[below] + weight * (T_975[above] - T_975[below])


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its spread; ``low``/``high`` bound the 95% interval (None from one value)."""

    mean: float
    n: int
    std: float | None = None  # over seeds; for an unpaired Δ (Welch), the standard error of the difference
    low: float | None = None
    high: float | None = None
    paired: bool | None = None  # for a Δ: seed by seed (True) or Welch (False)

    @property
    def excludes_zero(self) -> bool | None:
        return None if self.low is None or self.high is None else self.low > 0 or self.high < 0

    def interval(self) -> str:
        return "-" if self.low is None else f"[{self.low:+.2f}, {self.high:+.2f}]"


def estimate(values: list[float]) -> Estimate | None:
    """Mean, sample standard deviation and the t interval of the mean."""
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, 1)
    std = statistics.stdev(values)
    half = t_975(len(values) - 1) * std / math.sqrt(len(values))
    return Estimate(mean, len(values), std, mean - half, mean + half)


def difference(ablation: dict[str, float], baseline: dict[str, float]) -> Estimate | None:
    """``ablation - baseline`` over seeds (seed -> value): paired when both hold the same seeds, else Welch."""
    if not ablation or not baseline:
        return None
    if set(ablation) == set(baseline) and len(ablation) > 1:
        paired = estimate([ablation[seed] - baseline[seed] for seed in ablation])
        return Estimate(paired.mean, paired.n, paired.std, paired.low, paired.high, paired=True)
    a, b = list(ablation.values()), list(baseline.values())
    mean = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(mean, min(len(a), len(b)), paired=False)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(mean, min(len(a), len(b)), 0.0, mean, mean, paired=False)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = t_975(df) * se
    return Estimate(mean, min(len(a), len(b)), se, mean - half, mean + half, paired=False)


# The paper's claims -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What the paper says an ablation does to the error (alexnet-spec.md), in percentage points.

    ``sign``: the direction of Δ (ablation minus baseline) it implies: +1 the ablation errs more,
    0 no claim about the test error.
    """

    text: str
    top1: float | None = None
    top5: float | None = None
    sign: int = 0

    def delta(self) -> str:
        if self.top1 is None:
            return "+" if self.sign > 0 else "-"
        return f"{self.top1:+.1f} / {self.top5:+.1f}" if self.top5 is not None else f"over {self.top1:+.1f}"


CLAIMS = {
    "ablate_lrn": Claim("Δ +1.4 / +1.2 without LRN (§3.3)", 1.4, 1.2, sign=1),
    "ablate_overlap": Claim("Δ +0.4 / +0.3 without overlap (§3.4)", 0.4, 0.3, sign=1),
    "ablate_towers": Claim("Δ +1.7 / +1.2 with one tower (§3.2)", 1.7, 1.2, sign=1),
    "ablate_lighting": Claim("Δ over +1 top-1 without PCA lighting (§4.1)", 1.0, sign=1),
    "ablate_dropout": Claim("more overfitting without dropout: higher test error (§4.2)", sign=1),
    "ablate_relu": Claim("tanh reaches 25% training error 6x later (Figure 1): higher error at equal epochs", sign=1),
    "ablate_groups": Claim("(not measured in the paper, §3.2)"),
    "paper": Claim("40.7 / 18.2 on ILSVRC-2012 val (Table 2)"),
    "baseline": Claim("(the reference for Δ)"),
}


def agreement(delta: Estimate | None, claim: Claim | None) -> str:
    """Whether a measured Δ agrees with the paper's claim in sign, and whether its interval excludes 0."""
    if claim is None or not claim.sign or delta is None:
        return "-"
    agrees = delta.mean * claim.sign > 0
    sign = "✓ agrees in sign" if agrees else "✗ opposite sign"
    if delta.excludes_zero is None:
        return f"{sign}; no interval from one seed"
    if delta.low == delta.high:  # every seed gave the same Δ: a t interval says nothing
        return f"{sign}; the same Δ for every seed (no spread to judge noise by)"
    return f"{sign}; {'beyond noise (interval excludes 0)' if delta.excludes_zero else 'within noise'}"


# The sweep as rows -----------------------------------------------------------------------------------

METRICS = {  # report column -> results.json key
    "top-1 error": "test/ten_crop_top1_error",
    "top-5 error": "test/ten_crop_top5_error",
    "top-1 error (centre)": "test/centre_crop_top1_error",
    "top-5 error (centre)": "test/centre_crop_top5_error",
}
UNTESTED_METRICS = {"top-1 error": "best/val_top1_error"}  # a sweep run with test=false: its best validation error


@dataclass
class Row:
    """The jobs of one label (an experiment and its other swept values), pooled over seeds; errors in %."""

    label: str
    experiment: str
    jobs: list[Job]
    metrics: dict[str, str] = field(default_factory=lambda: dict(METRICS))  # report column -> results.json key
    errors: dict[str, Estimate | None] = field(default_factory=dict)  # by report column
    deltas: dict[str, Estimate | None] = field(default_factory=dict)  # top-1 / top-5 error minus the baseline's
    baseline: str | None = None  # the label of the row Δ is taken against

    @property
    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.results is not None]

    @property
    def claim(self) -> Claim | None:
        return CLAIMS.get(self.experiment)

    def by_seed(self, column: str) -> dict[str, float]:
        """Each finished seed's value in %; a non-finite one (a NaN written by an older run) is left out."""
        key = self.metrics[column]
        values = {job.seed or str(i): job.results.get(key) for i, job in enumerate(self.finished)}
        return {seed: 100 * v for seed, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}

    def best_job(self) -> Job | None:
        """The seed with the lowest ten-patch top-1 error (the best validation error if untested): its figures are drawn."""
        for key in (METRICS["top-1 error"], "best/val_top1_error"):
            scored = [job for job in self.finished if math.isfinite(job.results.get(key, math.nan))]
            if scored:
                return min(scored, key=lambda job: job.results[key])
        return None


@dataclass
class Sweep:
    folder: Path
    rows: list[Row]
    failed: list[tuple[Job, str]]  # jobs with a folder but no results, and why
    missing: list[dict[str, str]]  # grid points without a folder
    metrics: dict[str, str] = field(default_factory=lambda: dict(METRICS))  # report column -> results.json key
    grid: bool = True  # Hydra's basic sweeper: run again, it finishes the same jobs (Optuna draws new trials)

    @property
    def tested(self) -> bool:
        return self.metrics == METRICS

    @property
    def has_baseline(self) -> bool:
        return any(row.experiment in BASELINES for row in self.rows)


def summarize(sweep_dir: str | Path) -> Sweep:
    """The sweep's rows with their statistics, and its failed and missing jobs."""
    jobs = read_jobs(sweep_dir)
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.label, []).append(job)
    tested = any(METRICS["top-1 error"] in (job.results or {}) for job in jobs)
    metrics = METRICS if tested else UNTESTED_METRICS
    rows = [Row(label, group[0].experiment, group, dict(metrics)) for label, group in grouped.items()]
    rows.sort(key=lambda row: (row.experiment not in BASELINES, row.label))  # the baseline first
    baselines = {row.jobs[0].comparable: row for row in rows if row.experiment in BASELINES and row.finished}
    for row in rows:
        row.errors = {column: estimate(list(row.by_seed(column).values())) for column in metrics}
        reference = baselines.get(row.jobs[0].comparable)
        if reference is not None and reference is not row:
            row.baseline = reference.label
            for column in ("top-1 error", "top-5 error"):
                if column in metrics:
                    row.deltas[column] = difference(row.by_seed(column), reference.by_seed(column))
    failed = [(job, job.failure()) for job in jobs if job.results is None]
    return Sweep(Path(sweep_dir), rows, failed, missing_jobs(sweep_dir, jobs), metrics, _grid(sweep_dir))
