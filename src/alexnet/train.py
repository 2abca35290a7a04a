"""What ``python train.py`` does, given its composed Hydra config."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from alexnet.checkpoint import RUN_CHECKPOINTS, find_last, resolve_ckpt_path
from alexnet.config import in_multirun
from alexnet.errors import CheckpointError, ConfigError
from alexnet.model import count_parameters
from alexnet.module import AlexNetModule
from alexnet.parallel.launch import check_launch, check_run_folder, launch_context
from alexnet.report import format_test_report
from alexnet.tracking import finish_wandb, git_commit

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


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    return [logger for logger in loggers if logger is not None]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return [callback for callback in callbacks if callback is not None]  # a factory may decline


def resume_job(output_dir: str, model_kwargs: dict[str, Any] | None) -> str | None:
    """The newest readable checkpoint in a multirun job's folder, if an earlier run of the sweep left one."""
    try:
        path = find_last(output_dir, model_kwargs, RUN_CHECKPOINTS)
    except CheckpointError:
        return None
    log.info("Resuming this job of the sweep from %s", path)
    return str(path)


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write ``results.json``; return ``cfg.optimized_metric``.

    Distributed, every process runs this; (local) rank 0 alone checks the data up front (the
    others wait for it inside ``fit``) and logs, global rank 0 writes the results.
    """
    finished = Path(cfg.paths.output_dir, "results.json")
    if in_multirun() and finished.exists():  # a sweep run again into its folder: this job is done
        log.info("Skipping %s: it finished before (delete its results.json to run it again)", cfg.paths.output_dir)
        results = json.loads(finished.read_text())
        return results.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None
    check_run_folder(cfg.paths.output_dir)
    rank_zero = rank_zero_only.rank == 0
    if not rank_zero:  # one copy of the log in the console; other ranks log warnings and errors (to their own file)
        logging.getLogger("alexnet").setLevel(logging.WARNING)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=rank_zero)
    module = build_module(cfg)
    if cfg.get("ckpt_path") == "last" and in_multirun():
        raise ConfigError("ckpt_path=last is ambiguous in a multirun; resume each job with ckpt_path=<its last.ckpt>")
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.log_dir, module.model_kwargs)
    if ckpt_path is None and in_multirun():  # an interrupted job of a sweep run again resumes
        ckpt_path = resume_job(cfg.paths.output_dir, module.model_kwargs)
    datamodule = instantiate(cfg.data)
    if rank_zero:
        datamodule.prepare_data()
        datamodule.setup("fit")  # bad data fails now, not after the first epoch
        datamodule.check_classes(module.num_classes)
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False)
    check_launch(trainer)
    extras = {"parameters": count_parameters(module.model), "git_commit": git_commit()}
    for logger in loggers:
        logger.log_hyperparams(extras)
    processes = f", {trainer.world_size} processes" if trainer.world_size > 1 else ""
    log.info("AlexNet with %s parameters, precision %s%s", f"{extras['parameters']:,}", trainer.precision, processes)

    failed = True
    try:
        with launch_context(trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            results: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
            checkpoint = trainer.checkpoint_callback
            if cfg.get("test") and not trainer.interrupted:
                best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
                tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
                results.update(tested[0] if tested else {})
                report = format_test_report(results, module.class_errors.compute(), datamodule.class_names())
                log.info("Test on %s/val with %s:\n%s", datamodule.root, best or "the last weights", report)
        failed = False
    finally:
        if trainer.is_global_zero:
            finish_wandb(loggers, failed)
    if trainer.interrupted:  # Ctrl-C: no results.json, so that a sweep run again resumes this job
        log.warning("Interrupted: resume with ckpt_path=last (a sweep: run it again with hydra.sweep.dir=<its folder>)")
        return None
    if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_score is not None:
        results["best/val_top1_error"] = float(checkpoint.best_model_score)
        results["best/checkpoint"] = checkpoint.best_model_path
    if trainer.is_global_zero:
        Path(cfg.paths.output_dir, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None
