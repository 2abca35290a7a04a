"""What ``python eval.py`` does: load a checkpoint of any run and score it on the val split."""

from __future__ import annotations

import logging

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet import run_folder
from alexnet.checkpoint import load_model, resolve_ckpt_path
from alexnet.results.console import format_test_report
from alexnet.training.module import AlexNetModule

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Top-1/top-5 error of the centre crop and the ten patches; also written to results.json.

    The net and its input normalization come from the checkpoint: an ablation's checkpoint
    needs no model flags, and a model trained on raw 0-255 pixels is fed raw pixels.
    """
    model, info = load_model(resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir))
    if info.normalization is None:
        log.warning("%s does not say how its run normalized pixels: using the data config's", info.path)
    else:
        log.info("Normalizing as the checkpoint's run did: %s", info.normalization)
    datamodule = instantiate(cfg.data, normalization=info.normalization)
    datamodule.prepare_data()
    datamodule.setup("test")
    datamodule.check_classes(model.num_classes, info.classes)
    trainer: L.Trainer = instantiate(cfg.trainer)
    module = AlexNetModule(model)
    results = trainer.test(module, datamodule=datamodule)[0]
    report = format_test_report(results, module.class_errors.compute(), datamodule.class_names())
    log.info("%s on %s/val:\n%s", info.path, datamodule.root, report)
    run_folder.write_results(cfg.paths.output_dir, results)
    return results
