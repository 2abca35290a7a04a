"""Sweeps that use the whole machine (``hydra/launcher=local_devices``): N jobs at once, each on its own devices.

Hydra's basic launcher runs a sweep's jobs one after another in its own process; this one runs each job
in a fresh process (``spawn``) and keeps as many running as the machine has device groups: with 4 GPUs
and ``trainer.devices=1``, four Optuna trials or grid points at once, each seeing only its GPU
(``CUDA_VISIBLE_DEVICES``); on a machine without a GPU, each job pinned to its own CPU cores. A group
goes back to the pool when its job's process ends, however it ends: a job that fails (or is killed) is
reported failed, as Hydra's launchers report it, and the next job takes the group. The Optuna sweeper's
``n_jobs`` trials of a batch run at once and share its study, which lives in one SQLite file.

A Hydra plugin (Hydra builds launchers only from the ``hydra_plugins`` namespace); its config is
``conf/hydra/launcher/local_devices.yaml``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def device_groups(devices: Sequence[int] | None, devices_per_job: int, cuda: bool) -> list[tuple[int, ...]]:
    """The machine's devices (GPUs, or CPU cores without one) cut into one group per concurrent job."""
    if devices is None:
        if cuda:
            import torch

            devices = list(range(torch.cuda.device_count()))
        else:
            devices = (
                sorted(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else list(range(os.cpu_count() or 1))
            )
    devices = list(devices)
    if devices_per_job < 1 or len(devices) < devices_per_job:
        kind = "GPUs" if cuda else "CPU cores"
        raise ValueError(f"hydra.launcher.devices_per_job={devices_per_job}: this machine has {len(devices)} {kind} "
                         f"({devices}) to share out; set it between 1 and {len(devices)}")  # fmt: skip
    return [
        tuple(devices[i : i + devices_per_job]) for i in range(0, len(devices) - devices_per_job + 1, devices_per_job)
    ]


def _run_one(connection: Connection, payload: str, overrides: list[str], idx: int, group: tuple[int, ...],
             cuda: bool) -> None:  # fmt: skip
    """One job, in its own process: on its devices, through Hydra's ``run_job``; its JobReturn to the launcher.

    ``payload``: a file of the sweep's Hydra context, task function, config and Hydra's singletons, by
    cloudpickle (as submitit sends them: the task function is ``train.py``'s, which plain pickle cannot name).
    A file, not the process's arguments: those pass through a pipe that the child reads only once it has
    imported ``train.py``, so starting the next job would wait for that.
    """
    import cloudpickle

    hydra_context, task_function, config, singleton_state = cloudpickle.loads(Path(payload).read_bytes())
    if not cuda and hasattr(os, "sched_setaffinity"):
        import torch

        os.sched_setaffinity(0, group)  # DataLoader workers inherit it
        torch.set_num_threads(len(group))
    from alexnet.training.config import register_resolvers

    register_resolvers()
    Singleton.set_state(singleton_state)
    setup_globals()
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = str(idx)
        sweep_config.hydra.job.num = idx
    result = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        connection.send(result)
    except Exception as error:  # a return value that does not pickle: the job still failed to report
        failed = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=error)
        connection.send(failed)
    connection.close()


class LocalDevicesLauncher(Launcher):
    """Runs a batch of sweep jobs at once on one machine, one job per device group.

    Args:
        devices_per_job: GPUs (or, without CUDA, CPU cores) each job gets: ``trainer.devices``.
        devices: which GPU indices or CPU cores to share out; None: all of this machine's.
    """

    def __init__(self, devices_per_job: int = 1, devices: Sequence[int] | None = None) -> None:
        self.devices_per_job, self.devices = devices_per_job, devices
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        import cloudpickle
        import torch

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose,
                      execution_whitelist=self.hydra_context.execution_whitelist)  # fmt: skip
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        cuda = torch.cuda.is_available()
        free = device_groups(self.devices, int(self.devices_per_job), cuda)
        kind = "GPU" if cuda else "CPU core"
        log.info(f"Launching {len(job_overrides)} jobs, {min(len(free), len(job_overrides))} at once "
                 f"({kind}s {' | '.join(','.join(map(str, g)) for g in free)})")  # fmt: skip
        context = multiprocessing.get_context("spawn")  # a fresh CUDA context and torch per job
        payload = Path(str(self.config.hydra.sweep.dir)) / f".local_devices-{os.getpid()}-{initial_job_idx}.pkl"
        payload.write_bytes(cloudpickle.dumps((self.hydra_context, self.task_function, self.config,
                                               Singleton.get_state())))  # fmt: skip
        try:
            results = self._run(job_overrides, initial_job_idx, str(payload), free, cuda, kind, context)
        finally:
            payload.unlink(missing_ok=True)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose,
                      execution_whitelist=self.hydra_context.execution_whitelist)  # fmt: skip
        return [results[idx] for idx in sorted(results)]

    def _run(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, payload: str,
             free: list[tuple[int, ...]], cuda: bool, kind: str, context: Any) -> dict[int, JobReturn]:  # fmt: skip
        """Start jobs while a device group is free; as each process ends, take its result and free its group."""
        pending = list(enumerate(job_overrides, start=initial_job_idx))
        results: dict[int, JobReturn] = {}
        running: dict[Any, tuple[int, list[str], tuple[int, ...], Connection, Any]] = {}
        while pending or running:
            while pending and free:
                idx, overrides = pending.pop(0)
                group = free.pop(0)
                log.info(f"\t#{idx} on {kind} {','.join(map(str, group))}: {' '.join(filter_overrides(overrides))}")
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_run_one,
                    args=(sender, payload, list(overrides), idx, group, cuda),
                    name=f"sweep-job-{idx}",
                )  # fmt: skip
                with _visible_devices(group if cuda else None):
                    process.start()
                sender.close()
                running[process.sentinel] = (idx, list(overrides), group, receiver, process)
                running[receiver] = running[process.sentinel]
            for ready in wait(list(running)):
                if ready not in running:
                    continue
                idx, overrides, group, receiver, process = running[ready]
                if ready is receiver:
                    with contextlib.suppress(EOFError):  # the process ended without a word: its sentinel says how
                        results[idx] = receiver.recv()
                    del running[receiver]
                    continue
                process.join()
                if receiver in running:  # ended before its result came: drain what it sent, if anything
                    if receiver.poll():
                        with contextlib.suppress(EOFError):
                            results[idx] = receiver.recv()
                    del running[receiver]
                del running[ready]
                receiver.close()
                free.append(group)
                free.sort()
                if idx not in results:
                    error = RuntimeError(f"sweep job #{idx} ({' '.join(overrides)}) ended with exit code "
                                         f"{process.exitcode} before reporting (killed, or out of memory?)")  # fmt: skip
                    log.error(str(error))
                    results[idx] = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=error)
        return results


class _visible_devices:
    """``CUDA_VISIBLE_DEVICES`` set to ``group`` around a child's start (it copies the environment), then put back."""

    def __init__(self, group: tuple[int, ...] | None) -> None:
        self.group, self.saved = group, os.environ.get("CUDA_VISIBLE_DEVICES")

    def __enter__(self) -> None:
        if self.group is not None:  # indices among the devices this process sees (a SLURM allocation's, say)
            seen = self.saved.split(",") if self.saved else None
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(seen[i] if seen else str(i) for i in self.group)

    def __exit__(self, *exc: object) -> None:
        if self.group is None:
            return
        if self.saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.saved
