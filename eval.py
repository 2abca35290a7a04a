"""Score a checkpoint: python eval.py ckpt_path=<file or "last"> [data=imagenet data.root=...]"""

import hydra
from omegaconf import DictConfig

from alexnet.errors import run_main
from alexnet.evaluate import evaluate
from alexnet.training.config import TRUSTED_TARGETS, register_resolvers


@hydra.main(config_path="conf", config_name="eval", execution_whitelist=TRUSTED_TARGETS)
def main(cfg: DictConfig) -> dict[str, float]:
    return evaluate(cfg)


if __name__ == "__main__":
    register_resolvers()  # what conf/ interpolates: ${run_name:}, ${metric:...}, ...
    run_main(main)  # a user error (bad data, setting, checkpoint) as one line, exit 2
