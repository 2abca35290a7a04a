"""What ``python train.py`` does, given its composed Hydra config."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from alexnet import metric_names, run_folder
from alexnet.checkpoint import find_last, global_step, resolve_ckpt_path
from alexnet.errors import CheckpointError, ConfigError, TrainingDiverged
from alexnet.model import count_parameters
from alexnet.results.console import format_test_report
from alexnet.training.callbacks import Requeued, note_requeue_signal_from_the_start, slurm_job
from alexnet.training.config import in_multirun
from alexnet.training.hardware import keep_freed_memory, where_it_runs
from alexnet.training.launch import check_launch, check_run_folder, launch_context
from alexnet.training.loggers import finish_wandb, git_commit
from alexnet.training.module import AlexNetModule

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> AlexNetModule:
    """The model and its training recipe; invalid model or optimizer values fail here, first."""
    model = instantiate(cfg.model)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return AlexNetModule(
        model,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        config=OmegaConf.to_container(cfg, resolve=True),
        **cfg.get("module", {}),
    )


def build_loggers(cfg: DictConfig, resume_step: int | None = None) -> list[Logger]:
    """The loggers; those that keep a run's record (``resume_step`` in their config) continue it at that step."""
    configs = [c for c in (cfg.get("logger") or {}).values() if c is not None]
    loggers = [instantiate(c, **({"resume_step": resume_step} if "resume_step" in c else {})) for c in configs]
    return [logger for logger in loggers if logger is not None]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return [callback for callback in callbacks if callback is not None]  # a factory may decline


def checkpoint_to_resume(cfg: DictConfig, model: dict[str, Any]) -> str | None:
    """The checkpoint this run resumes, of this same net, or None for a run from the start.

    ``ckpt_path=last``: the newest checkpoint in the run folder that Hydra chose for it, the newest run's
    (``${continued_run:...}``), or with ``hydra.run.dir`` set by hand, the newest of this net under
    ``logs/train/runs`` (a new run from it); a path: that file. Neither: the newest checkpoint the run's own folder
    already holds (a SLURM job requeued, a sweep run again into its folder, the same run name again).
    """
    requested, output_dir = cfg.get("ckpt_path"), cfg.paths.output_dir
    if requested == "last":
        if in_multirun():
            raise ConfigError(
                "ckpt_path=last is ambiguous in a multirun; resume each job with ckpt_path=<its last.ckpt>"
            )
        runs = Path(cfg.paths.log_dir) / "train" / "runs"
        try:
            requested = str(find_last(output_dir, patterns=run_folder.CHECKPOINT_PATTERNS))
        except CheckpointError:  # hydra.run.dir set by hand: a new run, from the newest run of this net
            try:
                requested = str(find_last(runs, model, run_folder.RUNS_CHECKPOINT_PATTERNS))
            except CheckpointError:
                raise CheckpointError(
                    f"ckpt_path=last: no run under {runs} holds a readable checkpoint of this model; nothing to "
                    "continue (pass ckpt_path=<a checkpoint>)"
                ) from None
    elif requested is None:
        try:
            requested = str(find_last(output_dir, patterns=run_folder.CHECKPOINT_PATTERNS))
        except CheckpointError:
            return None
    return resolve_ckpt_path(requested, cfg.paths.log_dir, model)


def continued_step(ckpt_path: str | None, output_dir: str) -> int | None:
    """The step a run continues its own record at (metrics.csv, the W&B run): None for a new record."""
    if ckpt_path is None or run_folder.run_of(ckpt_path) != Path(output_dir).resolve():
        return None  # from the start, or from another run's checkpoint (this run's record starts here)
    return global_step(ckpt_path)


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write ``results.json``; return ``cfg.optimized_metric``.

    Distributed, every process runs this; (local) rank 0 alone checks the data up front (the
    others wait for it inside ``fit``) and logs, global rank 0 writes the results.
    """
    finished = run_folder.read_results(cfg.paths.output_dir) if in_multirun() else None
    if finished is not None:  # a sweep run again into its folder: this job is done
        log.info("Skipping %s: it finished before (delete its results.json to run it again)", cfg.paths.output_dir)
        return finished.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None
    note_requeue_signal_from_the_start()
    check_run_folder(cfg.paths.output_dir, continuing=cfg.get("ckpt_path") is not None)
    rank_zero = rank_zero_only.rank == 0
    if not rank_zero:  # one copy of the log in the console; other ranks log warnings and errors (to their own file)
        logging.getLogger("alexnet").setLevel(logging.WARNING)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=rank_zero)
    module = build_module(cfg)
    ckpt_path = checkpoint_to_resume(cfg, module.model_identity)
    resume_step = continued_step(ckpt_path, cfg.paths.output_dir)
    if resume_step is not None:
        log.info("Continuing %s from %s at step %d", cfg.paths.output_dir, ckpt_path, resume_step)
    datamodule = instantiate(cfg.data)
    if rank_zero:
        datamodule.prepare_data()
        datamodule.setup("fit")  # bad data fails now, not after the first epoch
        datamodule.check_classes(module.num_classes)
    loggers = build_loggers(cfg, resume_step)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False)
    check_launch(trainer)
    if trainer.strategy.root_device.type == "cpu":
        keep_freed_memory()  # a batch's memory is reused, not faulted in again (~4x the float work's speed)
    if os.environ.get("SLURM_JOB_ID"):  # which job wrote this log, and which of its starts
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        log.info("SLURM job %s%s", slurm_job(), f", started again after {restarts} requeue(s)" if restarts else "")
    extras = {"parameters": count_parameters(module.model), "git_commit": git_commit()}
    for logger in loggers:
        logger.log_hyperparams(extras)
    processes = f", {trainer.world_size} processes" if trainer.world_size > 1 else ""
    log.info("%s with %s parameters, precision %s%s, on %s", module.model_name, f"{extras['parameters']:,}",
             trainer.precision, processes, where_it_runs(trainer))  # fmt: skip

    failed, requeued = True, None
    try:
        with launch_context(trainer, ckpt_path):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            results: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
            checkpoint = trainer.checkpoint_callback
            if cfg.get("test") and not trainer.interrupted:
                best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
                tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
                results.update(tested[0] if tested else {})
                report = format_test_report(results, module.class_errors.compute(), datamodule.class_names())
                tested_on = getattr(datamodule, "test_description", f"{datamodule.root}/val")  # CIFAR-10 says which
                log.info("Test on %s with %s:\n%s", tested_on, best or "the last weights", report)
        failed = False
    except Requeued as stop:  # SLURM's signal: the job ends here and starts again from stop.checkpoint
        failed, requeued = False, stop
    except TrainingDiverged as error:
        if not in_multirun():
            raise
        # One job of a sweep (an Optuna trial at too high an lr): the others go on. No results.json,
        # so no error rate is reported for it; Optuna is told the worst error there is.
        log.error("%s: this job failed, the sweep goes on", error)
        return 1.0 if cfg.get("optimized_metric") else None
    finally:
        if trainer.is_global_zero:
            finish_wandb(loggers, failed)
    if requeued is not None:
        log.info("Stopped at step %d (epoch %d) with %s saved", requeued.step, requeued.epoch, requeued.checkpoint)
        if trainer.is_global_zero:
            requeued.requeue()  # last: SLURM ends the job now
        # Not a return: this job has no result. Hydra's launchers and submitit record one for a return
        # (a sweep would take the job for done and go on); SystemExit passes them, quietly, with exit 0.
        raise SystemExit(0)
    if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_score is not None:
        results[metric_names.BEST_VAL_TOP1_ERROR] = float(checkpoint.best_model_score)
        results[metric_names.BEST_CHECKPOINT] = checkpoint.best_model_path
    elif math.isfinite(module.best_val_top1_error):  # no checkpoint monitors it: the module's own record
        results[metric_names.BEST_VAL_TOP1_ERROR] = module.best_val_top1_error
    if trainer.is_global_zero:
        run_folder.write_results(cfg.paths.output_dir, results)
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None
