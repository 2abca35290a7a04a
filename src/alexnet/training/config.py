"""Hydra glue shared by the entry points: the resolvers ``conf/`` uses, and the running job's Hydra state.

:func:`register_resolvers` makes them known to OmegaConf. Importing this module does not: the
scripts at the root (train.py, eval.py, predict.py) call it before Hydra composes their config,
and so does a SLURM sweep's job before Hydra resolves its folder
(:class:`hydra_plugins.alexnet_lab.slurm_launcher.SlurmLauncher`). The resolvers:

- ``${auto_precision:${trainer.accelerator}}``: bf16-mixed where the hardware runs it natively, else 32-true.
- ``${run_name:}``: the run folder's name, the same in every process of one launch.
- ``${start_time:}``: this process's start time, the sweep folder's name.
- ``${rank_suffix:}``: ``_rank<N>`` in the log file names of ranks other than 0 under torchrun or srun.
- ``${num_classes_in:${data.root}}``: the class count of the data there (prepared or ImageFolder).
- ``${continued_run:${ckpt_path},logs/train/runs,${run_name:}}``: the run folder, the resumed run's own.
- ``${record_subdir:${hydra.runtime.output_dir}}``: where Hydra keeps a (continued) run's config.
- ``${job_folder:${hydra.overrides.task}}``: a multirun job's folder, named after the values it sweeps.
- ``${optuna_storage:${hydra.sweep.dir}}``: the Optuna study's database in the sweep's folder.
- ``${metric:VAL_TOP1_ERROR}``: a metric's key (``val/top1_error``), from :mod:`alexnet.metric_names`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from alexnet import metric_names, run_folder
from alexnet.checkpoint import find_last
from alexnet.data.manifest import count_classes
from alexnet.errors import CheckpointError, ConfigError
from alexnet.training.hardware import auto_precision

log = logging.getLogger(__name__)
# What a config's ``_target_`` may name: Hydra 1.4 resolves config-selected targets only where trusted code
# allows them (hydra.cc/docs/advanced/execution_whitelist; without a list it warns, and Hydra 1.5 refuses).
# The entry points pass it to ``hydra.main``; a config of your own classes: add their package here.
TRUSTED_TARGETS = (
    "alexnet.model.*",
    "alexnet.data.*",
    "alexnet.parallel.*",
    "alexnet.training.*",
    "alexnet.checkpoint.AtomicCheckpointIO",
    "alexnet.results.report.SweepReport",
    "torch.optim.*",  # optimizers and their schedulers
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.*",
    "lightning.pytorch.strategies.*",
    "datetime.timedelta",  # a strategy's timeout
    "optuna.samplers.*",
    "hydra_plugins.alexnet_lab.*",  # the project's launchers
)  # tests/test_structure.py: every target in conf/ is one of these


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


@functools.cache
def start_time() -> str:
    """The time of this process's first call (``2026-12-04_21-52-39``), the same at every later one: a sweep's folder.

    Hydra 1.4's ``${now:}`` is cached per config object, and the Optuna sweeper resolves the sweep's folder
    (its study's storage) in a copy of the config: a second later, the trials went to another folder.
    Registered with the cache as well, so a job that a launcher pickles to another process (SLURM's,
    ``local_devices``') takes the launching process's value along.
    """
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def continued_run(ckpt_path: str | None, runs_dir: str, name: str) -> str:
    """``hydra.run.dir``: the folder of the run that ``ckpt_path`` continues, else ``<runs_dir>/<name>``.

    One run, one folder: ``ckpt_path=last`` continues the newest run under ``runs_dir`` (the one with
    the newest checkpoint), and a checkpoint inside a run's (or a sweep job's) folder continues that
    run there, with its metrics.csv and W&B run. A checkpoint from elsewhere starts a new run.
    """
    new = f"{runs_dir}/{name}"
    if ckpt_path is None:
        return new
    if ckpt_path == "last":
        try:
            path = find_last(runs_dir, patterns=run_folder.RUNS_CHECKPOINT_PATTERNS)
        except CheckpointError:  # nothing to continue: train() says so
            return new
    else:
        path = Path(ckpt_path)
    folder = run_folder.run_of(path) if path.is_file() else None
    return str(folder) if folder is not None else new


def record_subdir(output_dir: str) -> str | None:
    """``hydra.output_subdir``: ``.hydra``, or ``.hydra/continued/<n>`` in a run folder that already has one.

    A run continued in its folder keeps the overrides it was started with in ``.hydra/`` (sweeps find
    their jobs by them); each later start's config and overrides are kept beside, numbered. None (Hydra
    writes nothing) on the ranks other than 0 that torchrun or srun start, which share the folder.
    """
    if rank_suffix():
        return None
    if not (Path(output_dir) / run_folder.CONFIG).is_file():
        return run_folder.HYDRA
    numbers = [int(p.name) for p in (Path(output_dir) / run_folder.HYDRA / "continued").glob("*") if p.name.isdigit()]
    return f"{run_folder.HYDRA}/continued/{max(numbers, default=0) + 1}"


def rank_suffix() -> str:
    """ "_rank<N>" for rank N > 0 of torchrun or srun, so that each rank logs to its own file.

    (The ranks Lightning starts already have their own ``hydra.job.name``.)
    """
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    return "" if rank == "0" else f"_rank{rank}"


# What a job folder's name may hold: nothing Hydra's override grammar reserves (= , quotes, brackets,
# spaces, ~ ...) and no shell glob, so that a path from `ls` works unquoted in ckpt_path=, images=, ...
_PLAIN = re.compile(r"[^A-Za-z0-9_.\-]")
_NAME_LIMIT = 100  # characters before the digest; file names stop at 255 bytes


def _sweep_command(sweep_dir: Path) -> list[str]:
    """The overrides the sweep was started with: from ``multirun.yaml`` (Hydra's basic sweeper writes it,
    also for jobs that run elsewhere, under submitit), else this process's command line."""
    config = run_folder.read_config(sweep_dir) if run_folder.is_sweep(sweep_dir) else {}
    task = ((config.get("hydra") or {}).get("overrides") or {}).get("task")
    return [str(o) for o in task] if isinstance(task, list) else [a for a in sys.argv[1:] if not a.startswith("-")]


def _swept_keys(command: list[str], searched: list[str]) -> set[str]:
    """The keys a sweep varies: its command line's sweeps (``seed=1,2,3``, ``'experiment=glob(ablate_*)'``)
    and the sweeper's own search space (``hydra.sweeper.params``: Optuna's)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides(command)
    except Exception:  # not Hydra's command line
        overrides = []
    swept = {o.key_or_group for o in overrides if o.is_sweep_override() and not o.key_or_group.startswith("hydra.")}
    return swept | set(searched)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _plain(override: str) -> str:
    """``experiment=ablate_lrn`` -> ``experiment-ablate_lrn``; any other reserved character -> ``_``."""
    key, _, value = override.lstrip("+~").partition("=")
    return _PLAIN.sub("_", f"{key}-{value}" if value else key)


def _existing_job_folder(sweep_dir: Path, task_overrides: list[str]) -> str | None:
    """The folder an earlier run of the sweep gave a job with these overrides (whatever its naming then)."""
    wanted = sorted(task_overrides)
    for folder in run_folder.job_folders(sweep_dir):
        if sorted(run_folder.read_override_list(folder)) == wanted:
            return folder.name
    return None


def job_folder(task_overrides: list[str]) -> str:
    """A multirun job's folder, named after the values it sweeps (``experiment-ablate_lrn+seed-1``), not its number.

    The same under every launcher (basic, submitit's SLURM one, Optuna's sweeper), and free of the
    characters Hydra's override grammar reserves: a job's checkpoint path pastes unquoted into
    ``ckpt_path=``. The overrides themselves are in the job's ``.hydra/overrides.yaml``. The same job
    lands in the same folder whatever the order of the sweep, and a sweep run again into its folder
    finds each job's folder by its overrides, also folders named before this scheme (``experiment=...``),
    with its results and checkpoints (:func:`alexnet.train.train`). Overrides common to all jobs, a name
    cut short or a character replaced add a digest (``experiment-ablate_lrn@1f2e3d4c``): the same sweep
    with other common settings, run into the same folder, gets folders of its own.
    Without a sweep on the command line or a search space, all overrides name it.
    """
    hydra = current_hydra()
    sweep_dir = Path(str(hydra.sweep.dir)) if hydra is not None else None
    if sweep_dir is not None and (found := _existing_job_folder(sweep_dir, task_overrides)):
        return found
    searched = list((hydra.sweeper.get("params") or {}).keys()) if hydra is not None else []
    swept = _swept_keys(_sweep_command(sweep_dir), searched) if sweep_dir is not None else set()
    named = sorted(o for o in task_overrides if _override_key(o) in swept)
    common = sorted(o for o in task_overrides if o not in named)
    if not named:
        named, common = common, []
    name = "+".join(_plain(o) for o in named) or "default"
    lossy = any(_plain(o) != o.replace("=", "-", 1) for o in named)
    if len(name) > _NAME_LIMIT or lossy:
        common = [*named, *common]
        name = name[:_NAME_LIMIT]
    return f"{name}@{_digest(','.join(common))}" if common else name


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def optuna_storage(sweep_dir: str) -> str:
    """``sqlite:///<sweep dir>/optuna.db``: the Optuna study beside its trials, so that the sweep can go on later.

    The folder is made here: Optuna opens the database before Hydra makes the sweep's folder.
    """
    folder = Path(sweep_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'optuna.db'}"
    if (folder / "optuna.db").is_file():
        upgrade_optuna_study(folder / "optuna.db")
    return url


def upgrade_optuna_study(database: Path) -> None:
    """Bring a study made by an older Optuna (the project used 2.10 until Hydra 1.4) to this one's schema.

    Optuna refuses an old schema until ``optuna storage upgrade`` is run; a sweep that goes on in its old
    folder does that here instead, after copying the database to ``optuna.db.<old schema>.bak``.
    """
    import shutil

    import optuna

    storage = optuna.storages.RDBStorage(
        f"sqlite:///{database}", skip_compatibility_check=True, skip_table_creation=True
    )  # as `optuna storage upgrade` opens it
    try:
        old, new = storage.get_current_version(), storage.get_head_version()
        if old == new:
            return
        if old not in storage.get_all_versions():
            raise ConfigError(f"{database} was made by a newer Optuna (schema {old}) than this one ({new}): "
                              "upgrade optuna, or sweep into a new folder")  # fmt: skip
        backup = database.with_name(f"{database.name}.{old}.bak")
        if not backup.exists():  # a retry after a failed upgrade keeps the file as it was first found
            shutil.copy2(database, backup)
        storage.upgrade()
    finally:
        storage.remove_session()
        storage.engine.dispose()
    log.info("%s: Optuna study upgraded from schema %s to %s (the old file is %s)", database, old, new, backup.name)


def register_resolvers() -> None:
    """Make the resolvers of the module doc known to OmegaConf (idempotent)."""
    OmegaConf.register_resolver("auto_precision", auto_precision, replace=True)
    OmegaConf.register_resolver("run_name", run_name, use_cache=True, replace=True)  # one name per process
    OmegaConf.register_resolver("start_time", start_time, use_cache=True, replace=True)  # kept by a pickled job
    OmegaConf.register_resolver("rank_suffix", rank_suffix, replace=True)
    OmegaConf.register_resolver("num_classes_in", count_classes, use_cache=True, replace=True)
    OmegaConf.register_resolver("job_folder", job_folder, replace=True)
    OmegaConf.register_resolver("continued_run", continued_run, use_cache=True, replace=True)  # one per process
    OmegaConf.register_resolver("record_subdir", record_subdir, use_cache=True, replace=True)
    OmegaConf.register_resolver("optuna_storage", optuna_storage, replace=True)
    OmegaConf.register_resolver("metric", metric_names.by_name, replace=True)


def current_hydra() -> Any | None:
    """Hydra's runtime config of this job, or None when not started by Hydra."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def in_multirun() -> bool:
    """True in a job of ``-m`` (a sweep)."""
    hydra = current_hydra()
    return hydra is not None and hydra.mode == RunMode.MULTIRUN
