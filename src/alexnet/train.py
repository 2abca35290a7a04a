"""What ``python train.py`` does, given its composed Hydra config."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from alexnet.hardware import auto_precision
from alexnet.model import count_parameters
from alexnet.module import AlexNetModule
from alexnet.parallel.launch import check_launch, check_run_folder, launch_context, rank_suffix, run_name
from alexnet.tracking import finish_wandb, git_commit, in_multirun

log = logging.getLogger(__name__)
OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
# Folder and log file names that every process of one distributed launch agrees on (hydra/default.yaml).
OmegaConf.register_new_resolver("run_name", run_name, use_cache=True, replace=True)
OmegaConf.register_new_resolver("rank_suffix", rank_suffix, replace=True)


def stored_config(ckpt_path: str | Path) -> dict[str, Any]:
    """The resolved run config a checkpoint of train.py carries (memory-mapped: cheap)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    return checkpoint.get("hyper_parameters", {}).get("config", {})


def resolve_ckpt_path(ckpt_path: str | None, log_dir: str | Path, model: dict | None = None) -> str | None:
    """The checkpoint to resume or evaluate; ``"last"`` is the newest ``last.ckpt`` under ``log_dir``.

    With ``model`` (the current run's resolved model config), ``"last"`` only considers
    checkpoints of that same model, and an explicit file of another model is refused:
    an ablation's weights (say, without LRN) have the same shapes and would load silently.
    """
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        if in_multirun():
            raise ValueError(
                "ckpt_path=last is ambiguous in a multirun; resume each job with ckpt_path=<its last.ckpt>"
            )
        found = sorted(Path(log_dir).glob("train/**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if model is not None:
            found = [p for p in found if stored_config(p).get("model") == model]
        if not found:
            which = " of this model (same model.* settings)" if model is not None else ""
            raise FileNotFoundError(f"ckpt_path=last: no last.ckpt{which} under {log_dir}/train; nothing to resume")
        ckpt_path = str(found[-1])
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    stored = stored_config(ckpt_path).get("model") if model is not None else None
    if stored is not None and stored != model:
        differ = sorted(k for k in {*stored, *model} if stored.get(k) != model.get(k))
        changes = ", ".join(f"model.{k}: {stored.get(k)!r} -> {model.get(k)!r}" for k in differ)
        raise ValueError(
            f"{ckpt_path} holds another model ({changes}); resume it with the settings it was trained with"
        )
    log.info("Using checkpoint %s", ckpt_path)
    return ckpt_path


def check_num_classes(model: torch.nn.Module, datamodule: Any) -> None:
    """The data's class count must match fc8's, before any step is taken."""
    if datamodule.num_classes != model.fc8.out_features:
        raise ValueError(
            f"the model has {model.fc8.out_features} classes (model.num_classes) but {datamodule.root} has "
            f"{datamodule.num_classes}; set model.num_classes={datamodule.num_classes} or use the matching data"
        )


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
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def format_results(results: dict[str, float]) -> str:
    """The final table: top-1/top-5 error for the centre crop and the ten patches."""
    lines = [f"{'':14}{'top-1 error':>12}{'top-5 error':>13}"]
    for label, key in (("centre crop", "centre_crop"), ("10 patches", "ten_crop")):
        top1, top5 = results.get(f"test/{key}_top1_error"), results.get(f"test/{key}_top5_error")
        if top1 is not None:
            lines.append(f"{label:14}{top1:>11.2%}{top5:>13.2%}")
    return "\n".join(lines)


def format_test_report(results: dict[str, float], module: AlexNetModule, datamodule: Any) -> str:
    """The error table of a test run and its worst classes (printed by train.py and eval.py)."""
    worst = format_worst_classes(module.class_errors.compute(), datamodule.class_names())
    return f"{format_results(results)}\n{worst}"


def format_worst_classes(errors: Tensor, names: list[str], count: int = 5) -> str:
    """The classes with the highest ten-patch top-1 error (none listed if all are right), named in words."""
    order = errors.nan_to_num(-1.0).argsort(descending=True)[:count].tolist()
    worst = ", ".join(f"{names[i]} {errors[i]:.1%}" for i in order if errors[i] > 0)
    return f"worst classes (10 patches, top-1 error): {worst or 'none, every image right'}"


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write ``results.json``; return ``cfg.optimized_metric``.

    Distributed, every process runs this; (local) rank 0 alone checks the data up front (the
    others wait for it inside ``fit``) and logs, global rank 0 writes the results.
    """
    check_run_folder(cfg.paths.output_dir)
    rank_zero = rank_zero_only.rank == 0
    if not rank_zero:  # one copy of the log in the console; other ranks log warnings and errors (to their own file)
        logging.getLogger("alexnet").setLevel(logging.WARNING)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=rank_zero)
    module = build_module(cfg)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.log_dir, module.hparams["config"]["model"])
    datamodule = instantiate(cfg.data)
    if rank_zero:
        datamodule.prepare_data()
        datamodule.setup("fit")  # bad data fails now, not after the first epoch
        check_num_classes(module.model, datamodule)
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False)
    check_launch(trainer)
    extras = {"parameters": count_parameters(module.model), "git_commit": git_commit()}
    for logger in loggers:
        logger.log_hyperparams(extras)
    processes = f", {trainer.world_size} processes" if trainer.world_size > 1 else ""
    log.info("AlexNet with %s parameters, precision %s%s", f"{extras['parameters']:,}", trainer.precision, processes)

    try:
        with launch_context(trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            results: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
            checkpoint = trainer.checkpoint_callback
            if cfg.get("test") and not trainer.interrupted:
                best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
                tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
                results.update(tested[0] if tested else {})
                report = format_test_report(results, module, datamodule)
                log.info("Test on %s/val with %s:\n%s", datamodule.root, best or "the last weights", report)
    finally:
        if trainer.is_global_zero:
            finish_wandb(loggers)
    if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_score is not None:
        results["best/val_top1_error"] = float(checkpoint.best_model_score)
        results["best/checkpoint"] = checkpoint.best_model_path
    if trainer.is_global_zero:
        Path(cfg.paths.output_dir, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None
