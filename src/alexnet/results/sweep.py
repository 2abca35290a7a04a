"""A multirun's folder as data: its jobs, their results and logs, and its rows pooled over seeds with statistics.

The report (:mod:`alexnet.results.report`), the figures (:mod:`alexnet.results.figures`) and the W&B dashboard
(:mod:`alexnet.results.dashboard`) all read a sweep through this module, and this module reads the folders
through :mod:`alexnet.run_folder`: ``multirun.yaml`` and one folder per job with ``.hydra/overrides.yaml``,
``metrics.csv``, ``checkpoints/`` and, once the job finished, ``results.json``.

Jobs that differ only in ``seed`` are one :class:`Row`: the mean, standard deviation and a 95%
confidence interval (Student's t) of their errors. A row's Δ is its error minus the baseline's
(``experiment=baseline``) with the same other swept values: paired seed by seed when both ran the
same seeds, else Welch's interval (:mod:`alexnet.results.statistics`). Beside it, what the paper claims
(:data:`alexnet.results.claims.CLAIMS`).
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from alexnet import metric_names, run_folder
from alexnet.checkpoint import recorded_best
from alexnet.results.claims import CLAIMS, Claim
from alexnet.results.statistics import Estimate, difference, estimate

BASELINES = ("baseline", "default")  # the same recipe as the ablations; "paper" may differ
BASELINE_OF = {"cifar_ablate_lrn": "cifar_lrn"}  # an ablation with a reference of its own (another net, recipe)
REFERENCES = (*BASELINES, *BASELINE_OF.values())  # the rows that Δ is taken against
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
        return read_metrics(self.folder / run_folder.METRICS)

    def failure(self) -> str:
        """Why a job without ``results.json`` has none, from its logs."""
        logs = sorted(self.folder.glob("*.log"))
        text = "\n".join(p.read_text(errors="replace") for p in logs)
        if "training diverged" in text:
            return "training diverged (see its train.log)"
        if "Traceback" in text or "error: " in text:
            return "failed with an error (see its train.log)"
        return "did not finish: interrupted, or still running"


def read_jobs(sweep_dir: str | Path) -> list[Job]:
    """Every job folder of the sweep (finished or not), each with the overrides it swept."""
    folders = run_folder.job_folders(sweep_dir)
    jobs = [Job(folder, run_folder.read_overrides(folder), run_folder.read_results(folder)) for folder in folders]
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
    return Job(folder, run_folder.read_overrides(folder), run_folder.read_results(folder))


def _grid(sweep_dir: str | Path) -> bool:
    """Whether the sweep is a grid (Hydra's basic sweeper), whose jobs a second run finds again."""
    sweeper = (run_folder.read_config(sweep_dir).get("hydra") or {}).get("sweeper") or {}
    return "BasicSweeper" in str(sweeper.get("_target_", "BasicSweeper"))


def missing_jobs(sweep_dir: str | Path, jobs: list[Job]) -> list[dict[str, str]]:
    """The points of a grid sweep that have no folder: the sweep stopped before it started them.

    The grid is the product of each swept key's values: listed or ``range``'d in the sweep's command
    line, or, for ``glob`` sweeps, those seen. Optuna and other sweepers have no grid: none are missing.
    """
    hydra = run_folder.read_config(sweep_dir).get("hydra") or {}
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
        if key in row and metric_names.EPOCH in row and math.isfinite(row[key]):
            values[int(row[metric_names.EPOCH])] = row[key]
    return dict(sorted(values.items()))


def best_checkpoint(job: Job) -> Path | None:
    """The checkpoint the job was tested with: the best by validation error, else its last.

    ``results.json`` names it; a job without one (a single run stopped early) is asked its checkpoints:
    the newest records which file was the best so far (Lightning's ModelCheckpoint state in it).
    """
    folder = job.folder / run_folder.CHECKPOINTS
    recorded = (job.results or {}).get(metric_names.BEST_CHECKPOINT)
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    if recorded and (folder / Path(recorded).name).is_file():  # the sweep folder was moved or copied
        return folder / Path(recorded).name
    saved = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in saved:
        best = recorded_best(path)
        if best is not None and (folder / best).is_file():
            return folder / best
    last = folder / run_folder.LAST_CHECKPOINT
    return last if last.is_file() else (saved[0] if saved else None)


# The sweep as rows -----------------------------------------------------------------------------------

METRICS = {  # report column -> results.json key
    "top-1 error": metric_names.TEST_TOP1_ERROR,
    "top-5 error": metric_names.TEST_TOP5_ERROR,
    "top-1 error (centre)": metric_names.TEST_CENTRE_TOP1_ERROR,
    "top-5 error (centre)": metric_names.TEST_CENTRE_TOP5_ERROR,
}
# A sweep run with test=false: its best validation error.
UNTESTED_METRICS = {"top-1 error": metric_names.BEST_VAL_TOP1_ERROR}


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
    def is_reference(self) -> bool:
        """A baseline, or the reference of an ablation (:data:`BASELINE_OF`): the row Δ is taken against."""
        return self.experiment in REFERENCES

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
        for key in (METRICS["top-1 error"], metric_names.BEST_VAL_TOP1_ERROR):
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
        return any(row.is_reference for row in self.rows)


def summarize(sweep_dir: str | Path) -> Sweep:
    """The sweep's rows with their statistics, and its failed and missing jobs."""
    jobs = read_jobs(sweep_dir)
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.label, []).append(job)
    tested = any(METRICS["top-1 error"] in (job.results or {}) for job in jobs)
    metrics = METRICS if tested else UNTESTED_METRICS
    rows = [Row(label, group[0].experiment, group, dict(metrics)) for label, group in grouped.items()]
    rows.sort(key=lambda row: (not row.is_reference, row.label))  # the references first
    baselines = {row.jobs[0].comparable: row for row in rows if row.experiment in BASELINES and row.finished}
    references = {(row.experiment, row.jobs[0].comparable): row for row in rows if row.is_reference and row.finished}
    for row in rows:
        row.errors = {column: estimate(list(row.by_seed(column).values())) for column in metrics}
        own = BASELINE_OF.get(row.experiment)
        comparable = row.jobs[0].comparable
        reference = references.get((own, comparable)) if own else baselines.get(comparable)
        if reference is not None and reference is not row:
            row.baseline = reference.label
            for column in ("top-1 error", "top-5 error"):
                if column in metrics:
                    row.deltas[column] = difference(row.by_seed(column), reference.by_seed(column))
    failed = [(job, job.failure()) for job in jobs if job.results is None]
    return Sweep(Path(sweep_dir), rows, failed, missing_jobs(sweep_dir, jobs), metrics, _grid(sweep_dir))
