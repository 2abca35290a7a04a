"""The training run's loggers: ``metrics.csv`` and a W&B run, each one record for the whole run.

``conf/logger/csv.yaml`` builds :class:`RunCSVLogger`; ``conf/logger/wandb.yaml`` a WandbLogger
started through :mod:`alexnet.tracking` by :func:`wandb_logger`, named by Hydra. If W&B cannot
start, training goes on with the CSV log alone.

A run that continues in its folder (``ckpt_path=last``, a SLURM requeue, a sweep run again) passes
both the step its checkpoint resumes at (``resume_step``, set by :func:`alexnet.train.train`):
``metrics.csv`` keeps the rows logged before that step and goes on below them, and the W&B run
goes on under the id the folder keeps, with W&B's step the trainer's, so that each step is logged once.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from alexnet import metric_names, run_folder, tracking
from alexnet.training.config import current_hydra, in_multirun

log = logging.getLogger(__name__)


def hydra_run_info() -> dict[str, Any]:
    """Name, group, job type, tags and the config group choices for the W&B run from Hydra's runtime ({} outside Hydra).

    Each multirun job gets its own run, grouped by sweep, so the dashboard
    compares the sweep's points side by side.
    """
    hydra = current_hydra()
    if hydra is None:
        return {}
    experiment = hydra.runtime.choices.get("experiment") or "default"
    info: dict[str, Any] = {"tags": [experiment, hydra.runtime.choices.get("data", "data")]}
    # The config group choices, which the resolved config does not name: the dashboard groups runs by them.
    choices = {k: v for k, v in hydra.runtime.choices.items() if not k.startswith("hydra") and v is not None}
    info["config"] = {**choices, "experiment": experiment}
    info["job_type"] = tracking.TRAIN_JOB_TYPE  # the dashboard shows these, not a sweep's report and figure runs
    if in_multirun():
        info["group"] = f"{Path(hydra.sweep.dir).name}"
        info["name"] = f"{hydra.job.num}:{experiment}"
    else:
        info["name"] = f"{experiment}:{Path(hydra.runtime.output_dir).name}"
    return info


def git_commit() -> str | None:
    """The commit of the code being run (with "-dirty" if it has uncommitted changes)."""
    root = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing ``<save_dir>/metrics.csv``, which a continued run goes on with.

    Lightning's deletes an existing ``metrics.csv`` when it opens a folder that is not empty. Here,
    given ``resume_step``, the rows logged at earlier steps are kept and the run's rows follow them;
    rows of ``resume_step`` and later, which a killed run logged after its checkpoint and the
    continued run logs again, are dropped: each step appears once. Without it, the file starts anew.
    Every row reaches the file when it is logged (``flush_logs_every_n_steps=1``), so that a kill
    loses none of the rows before its checkpoint.
    """

    def __init__(self, save_dir: str, resume_step: int | None = None, flush_logs_every_n_steps: int = 1) -> None:
        super().__init__(save_dir, name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        metrics = Path(self.log_dir) / run_folder.METRICS
        kept = kept_rows(metrics, self.resume_step) if self.resume_step is not None else []
        with warnings.catch_warnings():  # about the deletion that the kept rows undo
            warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            writer = CSVLogger.experiment.fget(self)  # deletes metrics.csv
        for row in kept:
            step = int(float(row.pop(metric_names.CSV_STEP)))
            writer.log_metrics(row, step)
        writer.save()
        return writer


def kept_rows(path: Path, resume_step: int) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` logged before ``resume_step``, with their empty cells left out."""
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        rows = [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(file)]
    return [row for row in rows if _step(row) < resume_step]


def _step(row: dict[str, str]) -> float:
    """A row's step; infinity for a row a kill cut short (dropped: its step is logged again)."""
    try:
        return float(row[metric_names.CSV_STEP])
    except (KeyError, ValueError):
        return float("inf")


class RunWandbLogger(WandbLogger):
    """Lightning's WandbLogger, logging at W&B's step the trainer's (``trainer/global_step`` as well).

    Lightning's leaves W&B's own step counting from 0 in each process: the segments of a continued
    run would then overlap. With the trainer's step, a resumed W&B run goes on where its checkpoint
    did, and W&B keeps the first of any step logged twice. Every logger here logs steps in order.
    """

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is None:
            return super().log_metrics(metrics, step)
        self.experiment.log({**metrics, metric_names.STEP: step}, step=step)


def wandb_logger(
    save_dir: str,
    project: str = tracking.DEFAULT_PROJECT,
    mode: str = "auto",
    init_timeout: float = 30.0,
    finish_timeout: float = 60.0,
    resume_step: int | None = None,
    **kwargs: Any,
) -> Logger | None:
    """A started ``WandbLogger``, or None (with a warning) when W&B cannot run.

    The run is started here rather than on first use, so that a W&B failure shows at the start,
    and through :func:`alexnet.tracking.start`: an online start that waits longer than ``init_timeout``
    goes offline. Logging never waits for the server; the upload at the end waits at most
    ``finish_timeout`` seconds, and what is not uploaded by then stays in the run folder.
    ``resume_step``: the run continues from a checkpoint of its own folder; the W&B run goes on under
    the id of the folder's first W&B run, the training run's (figures runs come after it). Online it
    is resumed; offline it is one more segment, which ``wandb sync --id`` uploads after the others.
    """
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    options = {**hydra_run_info(), **{k: v for k, v in kwargs.items() if v is not None}}
    earlier = run_folder.wandb_runs(save_dir)
    if resume_step is not None and earlier and "id" not in options:
        options.update(id=run_folder.wandb_run_id(earlier[0]), resume="allow")  # later ones: figures runs too
        log.info("W&B: continuing run %s at step %d", options["id"], resume_step)

    def begin(attempt: str) -> WandbLogger:
        if attempt == "offline":
            options.pop("log_model", None)  # nothing to upload checkpoints to
        run_settings = tracking.settings(init_timeout, finish_timeout)
        logger = RunWandbLogger(save_dir=save_dir, project=project, mode=attempt, settings=run_settings, **options)
        logger.experiment  # noqa: B018 - starts the run now
        return logger

    return tracking.start(begin, mode, "the training run")


def finish_wandb(loggers: list[Logger], failed: bool = False) -> None:
    """End the W&B run (multirun jobs must not share one) and say how to upload an offline one.

    ``failed``: the run ended with an error (a diverged loss, a crash): W&B marks it failed.
    """
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            tracking.finish(logger.experiment, failed)
