"""Score a checkpoint: python eval.py ckpt_path=<file or "last"> [data=imagenet data.root=...]"""

import hydra
from omegaconf import DictConfig

from alexnet.config import register_resolvers
from alexnet.evaluate import evaluate

register_resolvers()  # ${auto_precision:}, ${run_name:}, ${rank_suffix:} in conf/


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    return evaluate(cfg)


if __name__ == "__main__":
    main()
