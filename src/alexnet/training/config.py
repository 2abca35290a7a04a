"""Hydra glue shared by the entry points: the resolvers ``conf/`` uses, and the running job's Hydra state.

:func:`register_resolvers` makes them known to OmegaConf. Importing this module does not: the
scripts at the root (train.py, eval.py, predict.py) call it before Hydra composes their config,
and so does a SLURM sweep's job before Hydra resolves its folder
(:class:`hydra_plugins.alexnet_lab.slurm_launcher.SlurmLauncher`). The resolvers:

- ``${auto_precision:${trainer.accelerator}}``: bf16-mixed where the hardware runs it natively, else 32-true.
- ``${run_name:}``: the run folder's name, the same in every process of one launch.
- ``${rank_suffix:}``: ``_rank<N>`` in the log file names of ranks other than 0 under torchrun or srun.
- ``${num_classes_in:${data.root}}``: the class count of the data there (prepared or ImageFolder).
- ``${job_folder:${hydra.overrides.task}}``: a multirun job's folder, named after the values it sweeps.
- ``${optuna_storage:${hydra.sweep.dir}}``: the Optuna study's database in the sweep's folder.
- ``${metric:VAL_TOP1_ERROR}``: a metric's key (``val/top1_error``), from :mod:`alexnet.metric_names`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from alexnet import metric_names
from alexnet.data.manifest import count_classes
from alexnet.training.hardware import auto_precision


def run_name() -> str:
    """The run folder's name, the same in every process of one launch.

    SLURM batch jobs: the job and step (``slurm-123.0``, unchanged when the job is requeued);
    torchrun: its rendezvous id (``--rdzv-id``, or the one ``--standalone`` draws);
    otherwise (also in an interactive SLURM shell) the start time, which Lightning passes on
    to the ranks it starts. :func:`alexnet.training.launch.check_run_folder` refuses a folder
    that a finished run owns.
    """
    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    if job and step and SLURMEnvironment.detect():  # not an interactive shell: Lightning's own test
        return f"slurm-{job}.{step}"
    rdzv = os.environ.get("TORCHELASTIC_RUN_ID")
    if rdzv and rdzv != "none":
        return f"torchrun-{rdzv}"
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def rank_suffix() -> str:
    """ "_rank<N>" for rank N > 0 of torchrun or srun, so that each rank logs to its own file.

    (The ranks Lightning starts already have their own ``hydra.job.name``.)
    """
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    return "" if rank == "0" else f"_rank{rank}"


def _swept_keys(argv: tuple[str, ...]) -> list[str]:
    """The keys a multirun's command line sweeps (``seed=1,2,3``, ``'experiment=glob(ablate_*)'``), in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    except Exception:  # not Hydra's command line (a submitit worker): name folders by all overrides
        return []
    return [o.key_or_group for o in overrides if o.is_sweep_override() and not o.key_or_group.startswith("hydra.")]


def job_folder(task_overrides: list[str]) -> str:
    """A multirun job's folder, named after the values it sweeps (``experiment=ablate_lrn,seed=1``), not its number.

    The same job lands in the same folder whatever the order of the sweep, so a sweep run
    again into its folder finds each job's results and checkpoints (:func:`alexnet.train.train`).
    Overrides common to all jobs enter the name as a hash (``experiment=ablate_lrn-1f2e3d4c``):
    the same sweep with other common settings, run into the same folder, gets folders of its own.
    Without a sweep on the command line (Optuna's, or in a submitit worker), all overrides name it.
    """
    swept = _swept_keys(tuple(sys.argv[1:]))
    named = sorted(o for o in task_overrides if o.split("=", 1)[0].lstrip("+~") in swept)
    common = sorted(o for o in task_overrides if o not in named)
    if not named:
        named, common = common, []
    name = ",".join(named).replace("%", "%25").replace("/", "%2F") or "default"  # one folder, no collisions
    if len(name) > 120:  # file names stop at 255 bytes
        name = f"{name[:100]}-{_digest(name)}"
    return f"{name}-{_digest(','.join(common))}" if common else name


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def optuna_storage(sweep_dir: str) -> str:
    """``sqlite:///<sweep dir>/optuna.db``: the Optuna study beside its trials, so that the sweep can go on later.

    The folder is made here: Optuna opens the database before Hydra makes the sweep's folder.
    """
    folder = Path(sweep_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def register_resolvers() -> None:
    """Make the resolvers of the module doc known to OmegaConf (idempotent)."""
    OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, use_cache=True, replace=True)  # one name per process
    OmegaConf.register_new_resolver("rank_suffix", rank_suffix, replace=True)
    OmegaConf.register_new_resolver("num_classes_in", count_classes, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("job_folder", job_folder, replace=True)
    OmegaConf.register_new_resolver("optuna_storage", optuna_storage, replace=True)
    OmegaConf.register_new_resolver("metric", metric_names.by_name, replace=True)


def current_hydra() -> Any | None:
    """Hydra's runtime config of this job, or None when not started by Hydra."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def in_multirun() -> bool:
    """True in a job of ``-m`` (a sweep)."""
    hydra = current_hydra()
    return hydra is not None and hydra.mode == RunMode.MULTIRUN
