"""The paper's measure, top-k error, as a torchmetrics Metric; and when the training loop logs it."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import Metric

from alexnet.metric_names import TOP_K


class TopKError(Metric):
    """Top-k error, the paper's measure (§6): over all images, or per class (``average="none"``).

    A sample whose logits are not all finite counts as wrong: a diverged model scores 100%, where
    torchmetrics' top-k accuracy would rank NaN logits and call some of them right. Counts stay on the
    device (no host sync per update) and add up over processes.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_classes: int, k: int, average: str = "micro", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if average not in ("micro", "none"):
            raise ValueError(f"TopKError average={average!r}: 'micro' (all images) or 'none' (per class)")
        self.num_classes, self.top_k, self.average = num_classes, min(k, num_classes), average
        self.add_state("wrong", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")  # per true class
        self.add_state("total", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        top = logits.topk(self.top_k, dim=-1).indices  # (N, k)
        right = (top == labels[:, None]).any(-1) & logits.isfinite().all(-1)  # (N,)
        self.wrong.index_add_(0, labels, (~right).long())
        self.total.index_add_(0, labels, torch.ones_like(labels))

    def compute(self) -> Tensor:
        if self.average == "none":  # a class with no images has no error rate (0/0: NaN), not 100%
            return self.wrong.double().div(self.total).float()
        return self.wrong.sum().double().div(self.total.sum()).float()


def top_k_errors(num_classes: int, **kwargs: Any) -> dict[int, TopKError]:
    """Top-1 and top-5 error (:data:`alexnet.metric_names.TOP_K`), by k."""
    return {k: TopKError(num_classes, k, **kwargs) for k in TOP_K}


def steps_the_optimizer(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether this training batch ends in an optimizer step (with ``accumulate_grad_batches``, only every n-th)."""
    return (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or batch_idx + 1 >= trainer.num_training_batches


def is_logging_step(trainer: L.Trainer, batch_idx: int, stepped: bool) -> bool:
    """Whether the loggers write this training batch's metrics: every ``log_every_n_steps`` steps, and at a stop.

    ``stepped``: asked after the batch's optimizer step (``on_train_batch_end``), when ``global_step``
    counts it already; before it (``training_step``) it does not. Batches that only accumulate
    gradients are never logged, as Lightning logs none. Lightning decides the same with a private
    attribute (``_logger_connector.should_update_logs``); tests/training/test_module.py checks that both
    agree on every batch of a fit.
    """
    every = trainer.log_every_n_steps
    if every <= 0 or not steps_the_optimizer(trainer, batch_idx):
        return False
    step = trainer.global_step if stepped else trainer.global_step + 1
    return step % every == 0 or trainer.should_stop
