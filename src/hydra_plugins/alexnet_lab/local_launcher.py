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
import dataclasses
import logging
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


CHILD_EXIT_TIMEOUT_S = 120  # a job that reported and is still running this much later is ended


def device_groups(devices: Sequence[int] | None, devices_per_job: Any, cuda: bool) -> list[tuple[int, ...]]:
    """The devices to share out (GPUs, or CPU cores) cut into one group per concurrent job.

    GPUs are numbered among those this process sees (``CUDA_VISIBLE_DEVICES``, a SLURM allocation's);
    CPU cores as the operating system numbers them, among those this process may run on.
    """
    from alexnet.errors import ConfigError
    from alexnet.training.hardware import usable_cores

    if cuda:
        import torch

        available = list(range(torch.cuda.device_count()))
    else:
        available = usable_cores()
    kind = "GPUs" if cuda else "CPU cores"
    chosen = available if devices is None else list(devices)
    if len(set(chosen)) != len(chosen) or not set(chosen) <= set(available):
        raise ConfigError(f"hydra.launcher.devices={list(chosen)} is not valid: {kind} {available} are there to "
                          "share out, each once (null: all of them)")  # fmt: skip
    if not isinstance(devices_per_job, int) or not 1 <= devices_per_job <= len(chosen):
        raise ConfigError(f"hydra.launcher.devices_per_job={devices_per_job!r} is not valid: {len(chosen)} {kind} "
                          f"({chosen}) to share out, so 1 to {len(chosen)} (trainer.devices per job)")  # fmt: skip
    groups = [
        tuple(chosen[i : i + devices_per_job]) for i in range(0, len(chosen) - devices_per_job + 1, devices_per_job)
    ]
    idle = chosen[len(groups) * devices_per_job :]
    if idle:
        log.warning(f"{kind} {idle} stay idle: {len(chosen)} do not divide into groups of {devices_per_job}")
    return groups


@contextlib.contextmanager
def _visible_to_child(group: tuple[int, ...] | None) -> Iterator[None]:
    """``CUDA_VISIBLE_DEVICES`` narrowed to ``group`` around a child's start (it copies the environment)."""
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if group is not None:
        seen = saved.split(",") if saved else None  # the group's indices are among these
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(seen[i] if seen else str(i) for i in group)
    try:
        yield
    finally:
        if group is not None:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved


def _end_with_the_launcher() -> None:
    """A job whose launcher dies (killed, its terminal closed) stops too, rather than hold its devices."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _failed(overrides: list[str], error: BaseException) -> JobReturn:
    """A failed job's return, its error the user error behind it where there is one.

    The launcher's process rebuilds a wrapped error's causes as plain Exceptions: a ConfigError raised in a
    constructor (which Hydra's instantiate wraps) would reach alexnet.errors.run_main as a bug's traceback.
    """
    from alexnet.errors import user_error

    return JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=user_error(error) or error)


def _run_one(connection: Connection, payload: str, overrides: list[str], idx: int, group: tuple[int, ...],
             cuda: bool) -> None:  # fmt: skip
    """One job, in its own process: on its devices, through Hydra's ``run_job``; its JobReturn to the launcher.

    ``payload``: a file of the sweep's Hydra context, task function, config and Hydra's singletons, by
    cloudpickle (as submitit sends them: the task function is ``train.py``'s, which plain pickle cannot name).
    A file, not the process's arguments: those pass through a pipe that the child reads only once it has
    imported ``train.py``, so starting the next job would wait for that.
    """
    _end_with_the_launcher()
    try:
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
        if result.status is JobStatus.FAILED and isinstance(result._return_value, BaseException):
            result = _failed(overrides, result._return_value)  # Hydra's own field: tests/tasks/test_cli.py
    except Exception as error:  # before the job could start (its config, the payload)
        result = _failed(overrides, error)
    try:
        connection.send(result)
    except Exception as error:  # a return value that does not pickle
        connection.send(_failed(overrides, RuntimeError(f"sweep job #{idx}'s result does not pickle: {error}")))
    connection.close()


@dataclasses.dataclass
class _Job:
    idx: int
    overrides: list[str]
    group: tuple[int, ...]
    process: Any  # multiprocessing's SpawnProcess
    receiver: Connection
    reported_at: float | None = None


class LocalDevicesLauncher(Launcher):
    """Runs a batch of sweep jobs at once on one machine, one job per device group.

    Args:
        devices_per_job: GPUs (or CPU cores) each job gets: ``trainer.devices``.
        devices: which GPUs (among those visible) or CPU cores to share out; None: all of them.
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
        accelerator = str(self.config.get("trainer", {}).get("accelerator", "auto"))
        cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()  # as Lightning picks
        free = device_groups(self.devices, self.devices_per_job, cuda)
        kind = "GPU" if cuda else "CPU core"
        log.info(f"Launching {len(job_overrides)} jobs, {min(len(free), len(job_overrides))} at once "
                 f"({kind}s {' | '.join(','.join(map(str, g)) for g in free)})")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="local_devices-") as private:  # mode 0700: only we can swap it
            payload = Path(private) / "sweep.pkl"
            payload.write_bytes(cloudpickle.dumps((self.hydra_context, self.task_function, self.config,
                                                   Singleton.get_state())))  # fmt: skip
            results = self._run(job_overrides, initial_job_idx, str(payload), free, cuda, kind)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose,
                      execution_whitelist=self.hydra_context.execution_whitelist)  # fmt: skip
        return [results[idx] for idx in sorted(results)]

    def _run(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, payload: str,
             free: list[tuple[int, ...]], cuda: bool, kind: str) -> dict[int, JobReturn]:  # fmt: skip
        """Start jobs while a device group is free; as each process ends, take its result and free its group."""
        context = multiprocessing.get_context("spawn")  # a fresh CUDA context and torch per job
        pending = list(enumerate(job_overrides, start=initial_job_idx))
        results: dict[int, JobReturn] = {}
        running: list[_Job] = []
        try:
            while pending or running:
                while pending and free:
                    idx, overrides = pending.pop(0)
                    group = free.pop(0)
                    log.info(f"\t#{idx} on {kind} {','.join(map(str, group))}: {' '.join(filter_overrides(overrides))}")
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(target=_run_one, args=(sender, payload, list(overrides), idx, group, cuda),
                                              name=f"sweep-job-{idx}")  # fmt: skip
                    with _visible_to_child(group if cuda else None):
                        process.start()
                    sender.close()
                    running.append(_Job(idx, list(overrides), group, process, receiver))
                waiting = [job.receiver for job in running if job.reported_at is None]
                ready = set(wait([*waiting, *(job.process.sentinel for job in running)], timeout=10))
                for job in list(running):
                    if job.receiver in ready and job.reported_at is None:
                        with contextlib.suppress(EOFError):  # ended without a word: its exit code says how
                            results[job.idx] = job.receiver.recv()
                        job.reported_at = time.monotonic()
                    if job.reported_at is not None and job.process.is_alive():
                        if time.monotonic() - job.reported_at < CHILD_EXIT_TIMEOUT_S:
                            continue
                        log.warning(f"sweep job #{job.idx} reported but did not exit: ending it")
                        _end(job.process)
                    if job.process.is_alive():
                        continue
                    job.process.join()
                    if job.reported_at is None and job.receiver.poll():
                        with contextlib.suppress(EOFError):
                            results[job.idx] = job.receiver.recv()
                    if job.idx not in results:
                        from alexnet.errors import UserError

                        sweep_dir = self.config.hydra.sweep.dir if self.config is not None else "<the sweep's folder>"
                        error = UserError(f"sweep job #{job.idx} ({' '.join(filter_overrides(job.overrides))}) ended "
                                          f"with exit code {job.process.exitcode} before reporting (killed, or out of "
                                          f"memory?); run the sweep again with hydra.sweep.dir={sweep_dir} to go on "
                                          "(finished jobs are skipped)")  # fmt: skip
                        log.error(str(error))
                        results[job.idx] = JobReturn(
                            overrides=job.overrides, status=JobStatus.FAILED, _return_value=error
                        )
                    job.receiver.close()
                    job.process.close()
                    running.remove(job)
                    free.append(job.group)
                    free.sort()
        finally:  # interrupted (Ctrl-C) or failed here: no job goes on without its launcher
            for job in running:
                _end(job.process)
                job.receiver.close()
        return results


def _end(process: Any) -> None:
    """Terminate a job's process (SIGTERM: Lightning saves nothing, but the process's cleanup runs), then kill it."""
    if process.is_alive():
        process.terminate()
        process.join(10)
    if process.is_alive():
        process.kill()
        process.join()
