"""Every metric the project logs and reads back, named once: the module logs them, the rest import them.

Errors, not accuracies, because the paper reports top-1 and top-5 *error* (§6). The keys are those of
``metrics.csv``, the W&B run and ``results.json``; the configs refer to them as
``${metric:VAL_TOP1_ERROR}`` (a resolver of :mod:`alexnet.training.config`), so a rename here renames
them everywhere, the checkpoints' file names, the report's columns and the dashboard's panels included.
"""

from __future__ import annotations

TOP_K = (1, 5)
CROPS = ("centre_crop", "ten_crop")  # the test step's two scores (§4.1): the centre patch, the ten patches


def top_k_error(split: str, k: int, crop: str | None = None, reduction: str | None = None) -> str:
    """``val/top1_error``; with ``crop`` ``test/ten_crop_top5_error``; with ``reduction`` ``train/top1_error_epoch``."""
    return f"{split}/{crop + '_' if crop else ''}top{k}_error{'_' + reduction if reduction else ''}"


TRAIN_LOSS = "train/loss"  # logged every log_every_n_steps, the mean over all processes
VAL_LOSS = "val/loss"
TRAIN_TOP1_ERROR_EPOCH = top_k_error("train", 1, reduction="epoch")  # Figure 1: training error per epoch
TRAIN_TOP5_ERROR_EPOCH = top_k_error("train", 5, reduction="epoch")
VAL_TOP1_ERROR = top_k_error("val", 1)  # the checkpoints' and the lr schedule's monitor (§5)
VAL_TOP5_ERROR = top_k_error("val", 5)
TEST_TOP1_ERROR = top_k_error("test", 1, crop="ten_crop")  # the paper's reported error: ten patches
TEST_TOP5_ERROR = top_k_error("test", 5, crop="ten_crop")
TEST_CENTRE_TOP1_ERROR = top_k_error("test", 1, crop="centre_crop")
TEST_CENTRE_TOP5_ERROR = top_k_error("test", 5, crop="centre_crop")

# results.json adds, after training: the best validation error and the checkpoint that had it.
BEST_VAL_TOP1_ERROR = "best/val_top1_error"
BEST_CHECKPOINT = "best/checkpoint"

# alexnet.training.callbacks.ThroughputMonitor, on logging steps: Lightning's Throughput keys under "train/".
TRAIN_TIME = "train/time"  # seconds of training (validation excluded) since the start
TRAIN_SAMPLES_PER_SEC = "train/device/samples_per_sec"  # images per second on one device
LEARNING_RATE_PREFIX = "lr-"  # LearningRateMonitor logs lr-<optimizer class>: lr-SGD, lr-Adam
CONV1_IMAGES = "conv1"  # W&B images: conv1's kernels, one image per tower (Figure 3)
FIGURES_PREFIX = "figures"  # W&B images: the paper's figures of a run (python -m alexnet.results.figures)
STEP = "trainer/global_step"  # the x axis Lightning's WandbLogger defines in W&B
CSV_STEP = "step"  # the same step, as Lightning's CSVLogger names its column in metrics.csv
EPOCH = "epoch"


def by_name(name: str) -> str:
    """The key a constant of this module holds (``VAL_TOP1_ERROR`` -> ``val/top1_error``): ``${metric:NAME}``."""
    value = globals().get(name)
    if not name.isupper() or not isinstance(value, str):
        known = sorted(key for key, v in globals().items() if key.isupper() and isinstance(v, str))
        raise KeyError(f"${{metric:{name}}}: no such metric in alexnet.metric_names; known: {', '.join(known)}")
    return value
