"""A run's folder and a sweep's: the name of every file in them, and the one way each is written and read.

A run (``logs/train/runs/<time>/``) or a job of a sweep (``logs/train/multiruns/<time>/<job>/``)::

    .hydra/config.yaml, overrides.yaml   Hydra's record: the composed config and the command line's overrides
    train.log                            the log (other ranks: train_ddp_process_<n>.log, train_rank<n>.log)
    metrics.csv, hparams.yaml            Lightning's CSVLogger: every logged metric (alexnet.metric_names)
    results.json                         written last, whole or not at all: the run finished (train.py, eval.py)
    checkpoints/last.ckpt, epoch_*.ckpt  to resume, and the best by validation error (alexnet.checkpoint)
    hpc_ckpt_<n>.ckpt                    the checkpoint of a SLURM requeue
    conv1/                               conv1's kernels after each epoch
    figures/                             the paper's Figures 3 and 4 (python -m alexnet.results.figures)
    wandb/run-*, wandb/offline-run-*     the W&B run (alexnet.tracking)

A sweep's folder holds ``multirun.yaml`` (the sweep's Hydra config), one folder per job, and
``report.md``, ``report.html``, ``report.json`` and ``figures/`` (python -m alexnet.results.report).
The configs in ``conf/`` name the same folders (``tests/test_structure.py`` checks that they agree).

Every file that a later step takes as a sign (results.json: the job is done; a checkpoint: it can
resume; a report; a prepared shard, its manifest, the demo data's statistics) is written by
:func:`atomic_write`: a kill leaves the previous version or none, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

HYDRA = ".hydra"
CONFIG = f"{HYDRA}/config.yaml"
OVERRIDES = f"{HYDRA}/overrides.yaml"
METRICS = "metrics.csv"
HPARAMS = "hparams.yaml"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
REQUEUE_CHECKPOINTS = "hpc_ckpt_*.ckpt"  # Lightning's name for the checkpoint of a SLURM requeue
CHECKPOINT_PATTERNS = (f"{CHECKPOINTS}/*.ckpt", REQUEUE_CHECKPOINTS)  # every checkpoint of a run, under its folder
RUNS_CHECKPOINT_PATTERNS = tuple(
    f"*/{pattern}" for pattern in CHECKPOINT_PATTERNS
)  # every run's, under logs/train/runs
CONV1 = "conv1"
FIGURES = "figures"
WANDB = "wandb"
MULTIRUN = "multirun.yaml"
REPORT = "report.md"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


def atomic_write(path: str | Path, content: str | bytes | Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` whole or not at all: into ``.<name>.partial`` beside it, fsync, rename, fsync the folder.

    ``content``: text, bytes, or a function that writes into the open binary file (a checkpoint
    streamed by ``torch.save``). Beside the target, so that the rename never crosses file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as file:
        if callable(content):
            content(file)
        else:
            file.write(content.encode() if isinstance(content, str) else content)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
    return path


def write_results(folder: str | Path, results: dict[str, Any]) -> Path:
    """``results.json``: a sweep run again takes it as the sign that the job is done."""
    return atomic_write(Path(folder) / RESULTS, json.dumps(results, indent=2) + "\n")


def read_results(folder: str | Path) -> dict[str, Any] | None:
    """A finished run's ``results.json``; None if there is none or it cannot be read (then the job runs again)."""
    try:
        results = json.loads((Path(folder) / RESULTS).read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def is_run(folder: str | Path) -> bool:
    """A run's folder, or a job's of a sweep: Hydra made ``.hydra/`` in it."""
    return (Path(folder) / HYDRA).is_dir()


def is_sweep(folder: str | Path) -> bool:
    """A sweep's folder: Hydra wrote ``multirun.yaml`` in it."""
    return (Path(folder) / MULTIRUN).is_file()


def job_folders(sweep: str | Path) -> list[Path]:
    """The folders of a sweep's jobs, finished or not, sorted by name."""
    return sorted(path.parent.parent for path in Path(sweep).glob(f"*/{OVERRIDES}"))


def read_override_list(folder: str | Path) -> list[str]:
    """A run's command-line overrides as Hydra recorded them (``.hydra/overrides.yaml``); [] if none."""
    path = Path(folder) / OVERRIDES
    try:
        listed = yaml.safe_load(path.read_text()) if path.is_file() else []
    except yaml.YAMLError:
        return []
    return [str(item) for item in listed] if isinstance(listed, list) else []


def read_overrides(folder: str | Path) -> dict[str, str]:
    """A run's command-line overrides, key -> value as typed (``+``/``~`` dropped); {} if it has none."""
    return dict(item.lstrip("+~").split("=", 1) for item in read_override_list(folder) if "=" in item)


def read_config(folder: str | Path) -> dict[str, Any]:
    """A run's composed config as Hydra saved it (interpolations unresolved), or a sweep's ``multirun.yaml``; {}."""
    folder = Path(folder)
    path = folder / MULTIRUN if is_sweep(folder) else folder / CONFIG
    try:
        config = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        return {}
    return config if isinstance(config, dict) else {}


def run_of(path: str | Path) -> Path | None:
    """The run folder (or sweep job's) that holds ``path``, a checkpoint say; None if it lies in none.

    A folder with Hydra's ``.hydra/config.yaml``, below the current directory (where ``logs/`` is):
    the project's folder itself, or any above it, is not a run even if Hydra once wrote there.
    """
    cwd = Path.cwd().resolve()
    for folder in Path(path).resolve().parents:
        if folder == cwd or folder in cwd.parents:
            return None
        if (folder / CONFIG).is_file():
            return folder
    return None


def wandb_runs(folder: str | Path) -> list[Path]:
    """A run folder's W&B runs, oldest first: ``wandb/run-*`` (online) and ``wandb/offline-run-*``.

    A run continued after a kill or a requeue has one of these per segment, all with the run's id.
    """
    root = Path(folder) / WANDB
    return sorted([*root.glob("run-*"), *root.glob("offline-run-*")], key=lambda p: p.name.split("-")[-2])


def wandb_runs_of(folder: str | Path, run_id: str) -> list[Path]:
    """The segments of one W&B run in a run folder, oldest first."""
    return [d for d in wandb_runs(folder) if wandb_run_id(d) == run_id]


def wandb_run_id(run_dir: str | Path) -> str:
    """The W&B run id in a W&B run directory's name (``offline-run-20261204_010203-<id>``)."""
    return Path(run_dir).name.rsplit("-", 1)[-1]
