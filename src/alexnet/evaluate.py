"""What ``python eval.py`` does: load a checkpoint of any run and score it on the val split."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet.module import AlexNetModule
from alexnet.train import format_results, resolve_ckpt_path

log = logging.getLogger(__name__)


def load_model(ckpt_path: str | Path) -> torch.nn.Module:
    """The plain ``nn.Module`` of a training checkpoint, rebuilt from the config stored in it."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    config = checkpoint.get("hyper_parameters", {}).get("config", {})
    if "model" not in config:
        raise ValueError(f"{ckpt_path} was not written by train.py (it stores no model config)")
    model = instantiate(config["model"])
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Top-1/top-5 error of the centre crop and the ten patches; also written to results.json."""
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir)
    model = load_model(ckpt_path)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    if datamodule.num_classes != model.fc8.out_features:
        raise ValueError(
            f"{ckpt_path} has {model.fc8.out_features} classes but {datamodule.root} has "
            f"{datamodule.num_classes}: pass the data it was trained on (data=... data.root=...)"
        )
    trainer: L.Trainer = instantiate(cfg.trainer)
    results = trainer.test(AlexNetModule(model), datamodule=datamodule)[0]
    table = format_results(results)
    print(f"{ckpt_path} on {datamodule.root}/val:\n{table}")
    Path(cfg.paths.output_dir, "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
