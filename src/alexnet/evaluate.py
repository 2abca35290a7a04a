"""What ``python eval.py`` does: load a checkpoint of any run and score it on the val split."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet.module import AlexNetModule
from alexnet.train import check_num_classes, format_test_report, resolve_ckpt_path

log = logging.getLogger(__name__)
NORMALIZATION = ("mean", "per_pixel_mean", "stats", "input_scale")


def load_model(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The plain ``nn.Module`` of a train.py checkpoint, rebuilt from the config stored in it."""
    config = checkpoint.get("hyper_parameters", {}).get("config", {})
    if "model" not in config:
        raise ValueError("the checkpoint was not written by train.py (it stores no model config)")
    model = instantiate(config["model"])
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model


def normalization_of(checkpoint: dict[str, Any], data: DictConfig) -> dict[str, Any]:
    """How the checkpoint's run fed pixels to the model (mean, per-pixel mean, scale).

    A model trained on raw 0-255 pixels scores at chance on [0, 1] pixels, so these
    follow the checkpoint, not the eval config; a stats file that no longer exists is
    left to the eval config.
    """
    trained = checkpoint.get("hyper_parameters", {}).get("config", {}).get("data", {})
    keys = [k for k in NORMALIZATION if k in trained and k in data]
    stats = trained.get("stats")
    if stats is not None and not Path(stats).is_file():
        keys.remove("stats")
    return {k: trained[k] for k in keys}


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Top-1/top-5 error of the centre crop and the ten patches; also written to results.json."""
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = load_model(checkpoint)
    overrides = normalization_of(checkpoint, cfg.data)
    del checkpoint  # the optimizer state is not needed
    changed = {k: v for k, v in overrides.items() if cfg.data.get(k) != v}
    if changed:
        log.info("Normalizing as the checkpoint's run did: %s", changed)
    datamodule = instantiate(cfg.data, **overrides)
    datamodule.prepare_data()
    datamodule.setup("test")
    check_num_classes(model, datamodule)
    trainer: L.Trainer = instantiate(cfg.trainer)
    module = AlexNetModule(model)
    results = trainer.test(module, datamodule=datamodule)[0]
    log.info("%s on %s/val:\n%s", ckpt_path, datamodule.root, format_test_report(results, module, datamodule))
    Path(cfg.paths.output_dir, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
