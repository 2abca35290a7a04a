"""Train AlexNet: python train.py [experiment=...] [data=imagenet data.root=...] [key=value ...]"""

import hydra
from omegaconf import DictConfig

from alexnet.errors import run_main
from alexnet.train import train
from alexnet.training.config import TRUSTED_TARGETS, register_resolvers


@hydra.main(config_path="conf", config_name="train", execution_whitelist=TRUSTED_TARGETS)
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    register_resolvers()  # what conf/ interpolates: ${run_name:}, ${metric:...}, ...
    run_main(main)  # a user error (bad data, setting, checkpoint) as one line, exit 2
