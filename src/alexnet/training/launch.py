"""Starting a distributed run from Hydra: one output folder per run, and multirun jobs that stay one job.

Who starts the processes decides what can go wrong:

- **Lightning** (``python train.py trainer=ddp``): rank 0 re-runs ``sys.argv`` for ranks
  1..N-1, pointing them at its own output folder. In a multirun job, ``sys.argv``
  is the whole sweep: each rank would run every job of it. :func:`launch_context`
  hands Lightning this job's overrides and folder instead.
- **SLURM / torchrun** (``srun``, ``torchrun``): every rank starts ``train.py`` itself.
  Their run folder is named after the launch (:func:`alexnet.training.config.run_name`), not the second it
  started, so the ranks agree on it; under SLURM a requeued job finds its folder,
  and Lightning's ``hpc_ckpt_*.ckpt`` in it, again.
- **Multirun under SLURM**: ``hydra/launcher=slurm`` (:class:`hydra_plugins.alexnet_lab.slurm_launcher.SlurmLauncher`, submitit's)
  submits one SLURM job per sweep point with one task per device.

The one combination that cannot work is refused before anything starts: a sweep
(``-m``) inside processes that torchrun or srun started, or a launcher that runs
several jobs at once, where every process would run every job, or jobs would fight
over the same devices.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from omegaconf import read_write

from alexnet import run_folder
from alexnet.errors import ConfigError
from alexnet.training.config import current_hydra, in_multirun

# Launchers whose jobs each get their own processes and devices: Hydra's basic one (jobs one after another),
# submitit's SLURM one (a SLURM job with a task per device for each point) and the project's local_devices
# (jobs at once, each in its own process on its own devices).
OWN_DEVICES_LAUNCHERS = ("BasicLauncher", "SlurmLauncher", "LocalDevicesLauncher")
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by Lightning's launcher
CHILD_EXIT_TIMEOUT_S = 120


def check_run_folder(output_dir: str | os.PathLike, continuing: bool = False) -> None:
    """A run named after its launch must not overwrite a finished run of the same name.

    ``continuing``: a checkpoint was asked for (``ckpt_path=...``): a finished run may go on, on purpose.
    """
    finished = os.path.join(output_dir, run_folder.RESULTS)
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0
    if os.path.exists(finished) and not requeued and not continuing:
        raise ConfigError(
            f"{output_dir} already holds a finished run ({finished}). Each launch needs its own name: give "
            "torchrun a new --rdzv-id (or use --standalone), or set hydra.run.dir"
        )


def check_launch(trainer: L.Trainer) -> None:
    """Refuse the multirun combinations where each process would run the whole sweep (see the module doc)."""
    hydra = current_hydra()
    if trainer.world_size == 1 or not in_multirun() or hydra is None:
        return
    launcher = str(hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
    external = trainer.strategy.cluster_environment.creates_processes_externally
    if launcher not in OWN_DEVICES_LAUNCHERS:
        raise ConfigError(
            f"hydra/launcher {launcher} runs several sweep jobs at once (or starts them in a way Lightning cannot "
            f"restart for its other ranks), and each of them would start "
            f"{trainer.world_size} processes on the same devices. Sweep distributed runs with the default launcher "
            "(one job after another), hydra/launcher=local_devices (jobs at once, each on its own devices) or "
            "hydra/launcher=slurm (one SLURM job per sweep point)."
        )
    if launcher in ("BasicLauncher", "LocalDevicesLauncher") and external:
        raise ConfigError(
            "a sweep (-m) inside processes started by torchrun or srun: every process would run every job of the "
            "sweep. Start the sweep with plain `python train.py -m ...` (Lightning starts each job's processes) "
            "or submit it with `python train.py -m hydra/launcher=slurm ...` (one SLURM job per sweep point)."
        )
    if launcher == "SlurmLauncher" and not external:
        raise ConfigError(
            f"this SLURM job has one task but the trainer needs {trainer.world_size} processes; use "
            "hydra/launcher=slurm, which sets hydra.launcher.tasks_per_node=${trainer.devices} and "
            "nodes=${trainer.num_nodes}"
        )


@contextmanager
def launch_context(trainer: L.Trainer, ckpt_path: str | None = None) -> Iterator[None]:
    """Around one job's fit and test: start its ranks as one run, and leave nothing behind for the next job.

    In a multirun job Lightning is shown this job's overrides and folder when it starts
    ranks 1..N-1. Afterwards the process group is closed, the ranks are waited for and
    the variables Lightning set (``LOCAL_RANK`` among them, which would make the next
    job believe its processes already exist) are put back, so the next job starts afresh.
    ``ckpt_path``: the checkpoint this job resumes, which the other ranks resume too.
    """
    hydra = current_hydra()
    env = {key: os.environ.get(key) for key in LAUNCH_ENV}
    argv, run_dir = sys.argv, hydra.run.dir if hydra is not None else None
    swap = trainer.world_size > 1 and in_multirun() and hydra is not None
    swap = swap and not trainer.strategy.cluster_environment.creates_processes_externally
    if swap:
        overrides = [o for o in hydra.overrides.task if not o.startswith("ckpt_path=")]
        quoted = str(ckpt_path).replace("\\", "\\\\").replace("'", "\\'")  # any path: a job folder named before
        sys.argv = [sys.argv[0], *overrides, *([f"ckpt_path='{quoted}'"] if ckpt_path else [])]
        with read_write(hydra):
            hydra.run.dir = hydra.runtime.output_dir  # the ranks share the job's folder
    try:
        yield
    finally:
        if swap:
            sys.argv = argv
            with read_write(hydra):
                hydra.run.dir = run_dir
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        # Private: Lightning's subprocess launcher keeps the ranks it started as ``procs`` and has no public
        # wait; tests/parallel/test_distributed.py's sweep of DDP jobs fails if it moves.
        for process in getattr(trainer.strategy.launcher, "procs", []):
            try:
                process.wait(timeout=CHILD_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
