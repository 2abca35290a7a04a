"""Score a checkpoint: python eval.py ckpt_path=<file or "last"> [data=imagenet data.root=...]"""

import hydra
from omegaconf import DictConfig

from alexnet.errors import run_main
from alexnet.evaluate import evaluate
from alexnet.training.config import register_resolvers


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    return evaluate(cfg)


if __name__ == "__main__":
    register_resolvers()  # what conf/ interpolates: ${run_name:}, ${metric:...}, ...
    run_main(main)  # a user error (bad data, setting, checkpoint) as one line, exit 2
