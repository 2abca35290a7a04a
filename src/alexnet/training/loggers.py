"""The training run's loggers: Lightning's WandbLogger started through :mod:`alexnet.tracking`, named by Hydra.

``conf/logger/wandb.yaml`` builds it with :func:`wandb_logger` beside the CSV logger (``metrics.csv``).
If W&B cannot start, training goes on with the CSV log alone.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from alexnet import tracking
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


def wandb_logger(
    save_dir: str,
    project: str = tracking.DEFAULT_PROJECT,
    mode: str = "auto",
    init_timeout: float = 30.0,
    finish_timeout: float = 60.0,
    **kwargs: Any,
) -> Logger | None:
    """A started ``WandbLogger``, or None (with a warning) when W&B cannot run.

    The run is started here rather than on first use, so that a W&B failure shows at the start,
    and through :func:`alexnet.tracking.start`: an online start that waits longer than ``init_timeout``
    goes offline. Logging never waits for the server; the upload at the end waits at most
    ``finish_timeout`` seconds, and what is not uploaded by then stays in the run folder.
    """
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    options = {**hydra_run_info(), **{k: v for k, v in kwargs.items() if v is not None}}

    def begin(attempt: str) -> WandbLogger:
        if attempt == "offline":
            options.pop("log_model", None)  # nothing to upload checkpoints to
        run_settings = tracking.settings(init_timeout, finish_timeout)
        logger = WandbLogger(save_dir=save_dir, project=project, mode=attempt, settings=run_settings, **options)
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
