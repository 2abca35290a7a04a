"""Train AlexNet: python train.py [experiment=...] [data=imagenet data.root=...] [key=value ...]"""

import hydra
from omegaconf import DictConfig

from alexnet.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
