"""Callbacks the stock Lightning set lacks.

Figure 3's conv1 filters; a throughput monitor that does not wait for the GPU each step; a stop
at divergence; checkpoints every N steps and on SLURM's requeue signal that resume exactly
mid-epoch; and a progress bar for batch jobs.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.throughput import Throughput, get_available_flops
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch.distributed.tensor import DTensor
from torchvision.utils import save_image

from alexnet import metric_names, run_folder
from alexnet.errors import ConfigError, TrainingDiverged
from alexnet.model.filters import conv1_grids
from alexnet.training.metrics import is_logging_step

log = logging.getLogger(__name__)
# Trainer.precision -> the dtype the FLOPs run in, for the device's peak FLOP/s (MFU).
COMPUTE_DTYPES = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16, "16-mixed": torch.float16,
                  "16-true": torch.float16, "32-true": torch.float32, "64-true": torch.float64}  # fmt: skip


def images_in_batch(batch: tuple[torch.Tensor, ...]) -> int:
    """Batch size for ThroughputMonitor: the logged rate is images per second."""
    return batch[0].shape[0]


class Conv1Filters(L.Callback):
    """Saves conv1's kernels as one image grid per tower every ``every_n_epochs`` epochs.

    PNGs go to ``<dirpath>/epoch_NNN-tower_T.png`` and, when a W&B logger is
    attached, to the run's ``conv1`` image panel, one image per tower captioned ``conv1/tower_T``.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1) -> None:
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        model = pl_module.model
        weight = model.conv1.weight
        if isinstance(weight, DTensor):  # trainer=towers: each process holds one tower's kernels
            weight = weight.full_tensor()  # a collective: every process takes part
        if trainer.is_global_zero:
            self._save(trainer, conv1_grids(weight.detach(), getattr(model, "towers", 1)))

    def _save(self, trainer: L.Trainer, grids: list[torch.Tensor]) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        for tower, grid in enumerate(grids, 1):
            save_image(grid, self.dirpath / f"epoch_{trainer.current_epoch:03d}-tower_{tower}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                keys = [f"{metric_names.CONV1_IMAGES}/tower_{t}" for t in range(1, len(grids) + 1)]
                # As 0-255 bytes, (H, W, 3): W&B takes a float tensor's [0, 1] values for bytes (a black image).
                images = [grid.mul(255).round().byte().permute(1, 2, 0).numpy() for grid in grids]
                # At the epoch's last step, as Lightning logs the epoch's metrics: the next epoch's first step is its own.
                step = trainer.global_step - 1
                logger.log_image(key=metric_names.CONV1_IMAGES, images=images, caption=keys, step=step)


class ThroughputMonitor(L.Callback):
    """Images/s, FLOP/s and MFU of training, measured over the steps between two logging steps.

    Lightning's :class:`~lightning.fabric.utilities.throughput.Throughput` does the arithmetic; the
    keys are its own under ``train/`` (``train/device/samples_per_sec``, ``train/time``, ...), as
    Lightning's ThroughputMonitor logs them. Unlike that monitor, this one waits for the GPU and
    reads the clock only on logging steps (``log_every_n_steps``): between them it counts images and
    FLOPs (the module's ``flops_per_batch``). Validation time is not counted as training time.
    Training only: Lightning's also logs ``validate/...`` and ``test/...`` rates, which nothing here
    reads. Rank 0 logs, straight to the loggers (not into ``trainer.logged_metrics``), at the step and
    epoch Lightning writes that batch's metrics at.
    """

    def __init__(self, batch_size_fn: Callable[[Any], int] = images_in_batch, window_size: int = 100) -> None:
        self.batch_size_fn, self.window_size = batch_size_fn, window_size
        self._throughput: Throughput | None = None
        self._start = 0.0  # perf_counter() when training started, moved on by each validation's length
        self._paused = 0.0
        self._batches = self._samples = self._unlogged_flops = 0

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dtype = COMPUTE_DTYPES.get(str(trainer.precision), torch.float32)
        available = get_available_flops(trainer.strategy.root_device, dtype)
        self._throughput = Throughput(available, world_size=trainer.world_size, window_size=self.window_size)
        self._start = time.perf_counter()
        self._batches = self._samples = self._unlogged_flops = 0

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches += 1
        self._samples += self.batch_size_fn(batch)
        self._unlogged_flops += getattr(pl_module, "flops_per_batch", None) or 0
        if self._throughput is None or not is_logging_step(trainer, batch_idx, stepped=True):
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the GPU's work so far, not just what was queued
        elapsed = time.perf_counter() - self._start
        flops = self._unlogged_flops or None
        self._throughput.update(time=elapsed, batches=self._batches, samples=self._samples, flops=flops)
        self._unlogged_flops = 0
        metrics = {f"train{self._throughput.separator}{k}": v for k, v in self._throughput.compute().items()}
        metrics[metric_names.EPOCH] = trainer.current_epoch
        for logger in trainer.loggers:  # at the step Lightning logs this batch's metrics at
            logger.log_metrics(metrics, step=trainer.global_step - 1)

    @rank_zero_only
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._paused = time.perf_counter()

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start += time.perf_counter() - self._paused


def _all_finite(parameters: Any) -> bool:
    """Whether every weight is finite: one reduction per tensor on the device, one read on the host."""
    local = [p.to_local() if isinstance(p, DTensor) else p for p in parameters]  # trainer=towers: this tower's
    return bool(torch.stack([p.detach().isfinite().all() for p in local]).all()) if local else True


class StopOnDivergence(L.Callback):
    """Ends training at the first NaN or infinite loss, before a diverged model is checkpointed or scored.

    Every step's loss is tested on the device, without waiting for it; the host reads the verdict,
    agreed over all processes, where it waits anyway: on logging steps (``log_every_n_steps``),
    before validation, before any checkpoint is written and when training ends. So a run stops
    within ``log_every_n_steps`` steps of diverging, its last checkpoint holds the last good
    weights, and it fails with :class:`~alexnet.errors.TrainingDiverged` naming the step and the lr.

    ``loss_growth``: also warn when a logged loss exceeds this many times the running mean of
    the logged losses before it (None: never), the usual first sign of too high a learning rate.
    """

    def __init__(self, loss_growth: float | None = 10.0) -> None:
        self.loss_growth = loss_growth
        self._first_bad_step: torch.Tensor | None = None  # on the device; -1 while every loss is finite
        self._bad_loss: torch.Tensor | None = None
        self._mean_loss: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_bad_step = torch.tensor(-1, device=pl_module.device)
        self._bad_loss = torch.tensor(0.0, device=pl_module.device)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"].detach().float() if isinstance(outputs, dict) else outputs.detach().float()
        bad = ~loss.isfinite() & (self._first_bad_step < 0)  # the first one only
        step = trainer.global_step - 1  # the step the loss belongs to, as the logs number it
        self._first_bad_step = torch.where(bad, step, self._first_bad_step)
        self._bad_loss = torch.where(bad, loss, self._bad_loss)
        if is_logging_step(trainer, batch_idx, stepped=True):  # the host reads the logged metrics now anyway
            self.check(trainer)
            self._watch_growth(trainer, loss.item())

    # Before validation, a checkpoint or the end, the weights are checked as well: a finite loss
    # with infinite gradients leaves NaN weights that only the next loss would show.
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule | None = None) -> None:
        """Raise :class:`TrainingDiverged` if any process has seen a non-finite loss or, given the
        module, holds non-finite weights (every process must call it)."""
        if self._first_bad_step is None:
            return
        weights_bad = pl_module is not None and not _all_finite(pl_module.parameters())
        diverged = trainer.strategy.reduce_boolean_decision(bool(self._first_bad_step >= 0) or weights_bad, all=False)
        if not diverged:
            return
        step = int(self._first_bad_step)  # -1 on a process whose losses were finite
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        if step >= 0:
            what = f"the loss became {float(self._bad_loss)} at step {step}"
        elif weights_bad:
            what = f"the weights became NaN or infinite by step {trainer.global_step - 1}"
        else:
            what = "another process's loss or weights became NaN or infinite"
        raise TrainingDiverged(
            f"training diverged: {what} (epoch {trainer.current_epoch}, optimizer lr {lr:g}); stopped, and no "
            f"checkpoint after it was written. Lower optimizer.lr (e.g. {lr / 10:g}), then start again or resume "
            "the last good checkpoint with ckpt_path=<its last.ckpt>"
        )

    @rank_zero_only
    def _watch_growth(self, trainer: L.Trainer, loss: float) -> None:
        if self.loss_growth is None:
            return
        if self._mean_loss is not None and loss > self.loss_growth * self._mean_loss:
            log.warning(
                "the loss (%.4g at step %d) is over %gx its running mean (%.4g): the run may be diverging; "
                "if it keeps growing, lower optimizer.lr",
                loss,
                trainer.global_step - 1,
                self.loss_growth,
                self._mean_loss,
            )
        self._mean_loss = loss if self._mean_loss is None else 0.9 * self._mean_loss + 0.1 * loss


def last_batch_of_epoch(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether this is the epoch's last training batch (also under ``limit_train_batches``)."""
    return batch_idx + 1 >= trainer.num_training_batches


class StepCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint(every_n_train_steps=...)`` that passes over an epoch's last batch.

    A checkpoint there says "all of the epoch's batches taken": resumed, the epoch would end
    at once, without its validation. The per-epoch checkpoint, written after validation, is
    the one for that moment.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not last_batch_of_epoch(trainer, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def step_checkpoint(dirpath: str, every_n_train_steps: int | None) -> StepCheckpoint | None:
    """``last.ckpt`` every ``every_n_train_steps`` training steps as well as after each epoch (None: not at all).

    On ImageNet an epoch is 10,000 steps: a kill would lose up to a day. ``ckpt_path=last``
    resumes such a checkpoint mid-epoch, with the batches, augmentation and dropout the
    unbroken run would have had (:mod:`alexnet.data.resumable`).
    """
    if every_n_train_steps is None:
        return None
    if every_n_train_steps < 1:
        raise ConfigError(f"ckpt_every_n_steps={every_n_train_steps} is not valid; it must be >= 1 (or null)")
    return StepCheckpoint(
        dirpath=dirpath, filename="last", every_n_train_steps=every_n_train_steps, enable_version_counter=False
    )


def requeue_checkpoint_path(folder: str | Path) -> Path:
    """``hpc_ckpt_<n+1>.ckpt`` in ``folder``: Lightning resumes the highest ``n`` there when SLURM restarts the job."""
    numbers = [
        int(m.group(1))
        for p in Path(folder).glob(run_folder.REQUEUE_CHECKPOINTS)
        if (m := re.fullmatch(r"hpc_ckpt_(\d+)", p.stem))
    ]
    return Path(folder) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


class Requeued(Exception):
    """Training stopped between two steps for SLURM to requeue the job: ``checkpoint`` resumes it at ``step``.

    :func:`alexnet.train.train` ends the run's loggers, then calls :meth:`requeue`, and exits 0
    (``SystemExit``: no job result, also in a sweep), quietly; SLURM starts the job again.
    """

    def __init__(self, job: str, checkpoint: Path, step: int, epoch: int) -> None:
        super().__init__(f"stopped at step {step} (epoch {epoch}) for SLURM job {job} to be requeued")
        self.job, self.checkpoint, self.step, self.epoch = job, checkpoint, step, epoch

    def requeue(self) -> None:
        """``scontrol requeue``: SLURM ends this job now and starts it again, which resumes ``checkpoint``."""
        try:
            result = subprocess.call(["scontrol", "requeue", self.job])
        except OSError as error:  # no scontrol on this node's PATH: the checkpoint is there to resume by hand
            log.warning("Could not requeue SLURM job %s (%s): resume it with ckpt_path=%s", self.job, error,
                        self.checkpoint)  # fmt: skip
            return
        if result == 0:
            log.info("Requeued SLURM job %s: it resumes from %s at step %d when SLURM restarts it",
                     self.job, self.checkpoint, self.step)  # fmt: skip
        else:
            log.warning("Requeuing SLURM job %s failed with exit code %d: resume it with ckpt_path=%s", self.job,
                        result, self.checkpoint)  # fmt: skip


_SIGNALLED_EARLY: set[int] = set()


def _note_early(signum: int, frame: Any) -> None:
    _SIGNALLED_EARLY.add(signum)


def note_requeue_signal_from_the_start(signum: int = signal.SIGUSR1) -> None:
    """Under SLURM, take note of the requeue signal from the job's start, before any callback exists.

    Its default action ends the process: a signal that SLURM delivers while the job is still starting
    (a preemption, or a ``scancel --signal`` that SLURM retried across a requeue) would fail the job.
    :class:`RequeueCheckpoint` acts on it at the first logging step.
    """
    if SLURMEnvironment.detect():
        signal.signal(signum, _note_early)


def slurm_job() -> str:
    """This SLURM job's id as ``scontrol`` takes it (``<array job>_<task>`` in a job array)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]


class RequeueCheckpoint(L.Callback):
    """On SLURM's warning signal, a requeue checkpoint written between two steps, and a quiet stop.

    With ``#SBATCH --signal=USR1@120``, SLURM signals a job two minutes before its time
    limit. Lightning's own handler writes ``hpc_ckpt_<n>.ckpt`` and requeues the job at once,
    inside the signal handler, in the middle of whatever step is running: the loader has
    handed over a batch the weights have not seen yet, and SLURM then kills the job while it
    still trains (a traceback from W&B's service, "Error executing job"). This one only takes note; at
    the next logging step (where all processes agree to) it saves ``hpc_ckpt_<n>.ckpt`` in the run
    folder (``trainer.default_root_dir``); once that step's metrics are logged, it stops training with
    :class:`Requeued`, and :func:`alexnet.train.train` ends the loggers and then requeues the job.
    The requeued job finds the checkpoint in its run folder (``${run_name:}`` keeps the SLURM job's
    name) and resumes it mid-epoch, with the same metrics.csv and W&B run. A signal during an epoch's
    last steps or its validation is acted on at the next epoch's first logging step.
    """

    def __init__(self) -> None:
        self._signal: int | None = None
        self._requested = False
        self._stop: Requeued | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Private: a one-device strategy holds no cluster environment, and Lightning keeps the SLURM one
        # (with the user's auto_requeue and requeue_signal) only here. tests/training/test_failures.py's
        # requeue test fails if it moves.
        environment = trainer._accelerator_connector.cluster_environment
        if stage == "fit" and isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            self._signal = environment.requeue_signal or signal.SIGUSR1
            self._requested = self._signal in _SIGNALLED_EARLY  # during the start (see note_requeue_signal_...)
            _SIGNALLED_EARLY.discard(self._signal)
            # Before Lightning registers its own, which it then leaves out, and before any data loader
            # worker starts: SLURM signals every process of the job step, and a worker only takes note.
            signal.signal(self._signal, self._take_note)

    def _take_note(self, signum: int, frame: Any) -> None:
        self._requested = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Not after an epoch's last batch: see StepCheckpoint.
        if self._signal is None or last_batch_of_epoch(trainer, batch_idx):
            return
        # Where all processes agree to look: the logging steps (every step when nothing is logged).
        if not is_logging_step(trainer, batch_idx, stepped=True) and trainer.log_every_n_steps > 0:
            return
        if trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            self._requested = False
            path = requeue_checkpoint_path(trainer.default_root_dir)
            trainer.save_checkpoint(path)
            rank_zero_info(f"SLURM's requeue signal ({signal.Signals(self._signal).name}): saved {path}")
            self._stop = Requeued(slurm_job(), path, trainer.global_step, trainer.current_epoch)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # The batch the checkpoint ended with is logged by now (its metrics.csv row and W&B step).
        if self._stop is not None:
            stop, self._stop = self._stop, None
            raise stop


class LineProgressBar(ProgressBar):
    """Progress as plain log lines, for batch jobs whose output is a file and not a terminal.

    A bar redrawn with carriage returns turns a log file into one huge line;
    this prints one line every ``every_n_steps`` training steps and one at the
    end of each validation, with the same metrics the bar shows.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._start = time.perf_counter()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        if not self._enabled:
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        elapsed = time.perf_counter() - self._start
        rank_zero_info(f"[{elapsed:7.0f}s] epoch {trainer.current_epoch} {what} {shown}")
        sys.stdout.flush()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = batch_idx + 1
        if step % self.every_n_steps == 0 or step == self.total_train_batches:
            self._line(trainer, pl_module, f"step {step}/{self.total_train_batches}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._line(trainer, pl_module, "validation")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._line(trainer, pl_module, "test done")


def progress_bar(refresh_rate: int = 1, every_n_steps: int = 50) -> ProgressBar:
    """A tqdm bar on a terminal, plain lines otherwise (SLURM, nohup, CI)."""
    if sys.stdout.isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return LineProgressBar(every_n_steps=every_n_steps)
