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
from omegaconf import DictConfig, OmegaConf

from alexnet.hardware import auto_precision
from alexnet.model import count_parameters
from alexnet.module import AlexNetModule
from alexnet.tracking import finish_wandb, git_commit

log = logging.getLogger(__name__)
OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)


def resolve_ckpt_path(ckpt_path: str | None, log_dir: str | Path) -> str | None:
    """``"last"`` means the newest ``last.ckpt`` of any earlier run under ``log_dir``."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        found = sorted(Path(log_dir).glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"ckpt_path=last: no checkpoints/last.ckpt under {log_dir}; nothing to resume")
        ckpt_path = str(found[-1])
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    log.info("Resuming from %s", ckpt_path)
    return ckpt_path


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


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write ``results.json``; return ``cfg.optimized_metric``."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # bad data fails now, not after the first epoch
    if datamodule.num_classes != module.model.fc8.out_features:
        raise ValueError(
            f"model.num_classes={module.model.fc8.out_features} but {datamodule.root} has "
            f"{datamodule.num_classes} classes; set model.num_classes={datamodule.num_classes}"
        )
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False)
    extras = {"parameters": count_parameters(module.model), "git_commit": git_commit()}
    for logger in loggers:
        logger.log_hyperparams(extras)
    log.info("AlexNet with %s parameters, precision %s", f"{extras['parameters']:,}", trainer.precision)

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.log_dir))
        results: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        checkpoint = trainer.checkpoint_callback
        if cfg.get("test") and not trainer.interrupted:
            best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
            tested = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            results.update(tested[0] if tested else {})
            log.info(
                "Test on %s/val with %s:\n%s", datamodule.root, best or "the last weights", format_results(results)
            )
    finally:
        finish_wandb(loggers)
    if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_score is not None:
        results["best/val_top1_error"] = float(checkpoint.best_model_score)
        results["best/checkpoint"] = checkpoint.best_model_path
    Path(cfg.paths.output_dir, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None
