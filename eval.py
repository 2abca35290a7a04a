"""Score a checkpoint: python eval.py ckpt_path=<file or "last"> [data=imagenet data.root=...]"""

import hydra
from omegaconf import DictConfig

from alexnet.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    return evaluate(cfg)


if __name__ == "__main__":
    main()
