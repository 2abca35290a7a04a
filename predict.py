"""Top-5 classes of images: python predict.py ckpt_path=<file or "last"> images=<file or folder> [predict.ten_crop=true]"""

import hydra
from omegaconf import DictConfig

from alexnet.errors import run_main
from alexnet.predict import format_predictions, predict
from alexnet.training.config import TRUSTED_TARGETS, register_resolvers


@hydra.main(config_path="conf", config_name="predict", execution_whitelist=TRUSTED_TARGETS)
def main(cfg: DictConfig) -> list[dict]:
    predictions = predict(cfg.ckpt_path, cfg.images, log_dir=cfg.paths.log_dir, **cfg.predict)
    print(format_predictions(predictions))
    return predictions


if __name__ == "__main__":
    register_resolvers()  # what conf/ interpolates: ${run_name:}, ${metric:...}, ...
    run_main(main)  # a user error (bad path, checkpoint) as one line, exit 2
