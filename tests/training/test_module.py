"""The LightningModule's error metrics and the ten-patch average."""

import functools
from typing import ClassVar

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from alexnet.training.metrics import TopKError
from alexnet.training.module import CENTRE, AlexNetModule


class Lookup(nn.Module):
    """A stand-in classifier whose logits are the mean of the input's pixels, per class channel."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc8 = nn.Linear(1, num_classes)  # a parameter for the optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)


def test_top_k_error_is_one_minus_accuracy():
    logits = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    labels = torch.tensor([0, 2, 2, 1])
    top1, top2 = TopKError(3, 1), TopKError(3, 2)
    assert top1(logits, labels).item() == pytest.approx(0.5)  # rows 1 and 3 wrong
    assert top2(logits, labels).item() == pytest.approx(0.0)  # every label in the top two
    assert TopKError(3, 5).top_k == 3  # k clipped to the number of classes


def test_top_k_error_equals_torchmetrics_on_finite_logits():
    torch.manual_seed(0)
    logits, labels = torch.randn(200, 10), torch.randint(0, 10, (200,))
    for k in (1, 5):
        accuracy = MulticlassAccuracy(10, top_k=k, average="micro")(logits, labels)
        assert TopKError(10, k)(logits, labels).item() == pytest.approx(1 - accuracy.item())
        per_class = MulticlassAccuracy(10, top_k=k, average="none")(logits, labels)
        assert TopKError(10, k, average="none")(logits, labels).tolist() == pytest.approx((1 - per_class).tolist())


def test_non_finite_logits_are_wrong():
    """A diverged model scores 100% error, whatever its NaNs would rank (torchmetrics: argmax of NaN is class 0)."""
    labels = torch.tensor([0, 1, 2, 0])
    nan = torch.full((4, 3), float("nan"))
    for k in (1, 2, 3):  # k = 3 = all classes: any finite logits are right
        assert TopKError(3, k)(nan, labels).item() == 1.0
    logits = torch.tensor([[9.0, 0, 0], [0, float("inf"), 0], [0, 0, 9.0], [9.0, float("-inf"), 0]])
    errors = TopKError(3, 1, average="none")
    errors.update(logits, labels)
    assert errors.compute().tolist() == [0.5, 1.0, 0.0]  # one inf in a row is enough
    assert MulticlassAccuracy(3, top_k=1, average="micro")(nan, labels).item() == 0.5  # what this metric replaced


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # test_step called without a Trainer
def test_ten_patch_average_of_softmax_and_centre_crop():
    torch.manual_seed(0)
    module = AlexNetModule(Lookup(3), channels_last=False)
    n = 6
    patches = torch.randn(n, 10, 3, 2, 2)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    module.test_step((patches, labels), 0)
    probs = patches.flatten(3).mean(-1).softmax(-1)  # (n, 10, classes)
    expected_ten = (probs.mean(1).argmax(-1) != labels).float().mean()
    expected_centre = (probs[:, CENTRE].argmax(-1) != labels).float().mean()
    assert module.crop_errors["ten_crop"]["1"].compute().item() == pytest.approx(expected_ten.item())
    assert module.crop_errors["centre_crop"]["1"].compute().item() == pytest.approx(expected_centre.item())
    wrong = probs.mean(1).argmax(-1) != labels
    per_class = [wrong[labels == c].float().mean().item() for c in range(3)]
    assert module.class_errors.compute().tolist() == pytest.approx(per_class)
    # The average is over probabilities, not logits: a case where the two disagree.
    logits = torch.tensor([[20.0, 0, 0]] + [[0, 1.5, 0]] * 9)  # one confident patch against nine mild ones
    assert logits.mean(0).argmax() == 0 and logits.softmax(-1).mean(0).argmax() == 1
    module.crop_errors["ten_crop"]["1"].reset()
    module.test_step((logits[None, :, :, None, None].expand(1, 10, 3, 2, 2), torch.tensor([1])), 0)
    assert module.crop_errors["ten_crop"]["1"].compute().item() == 0.0


def test_invalid_optimizer_values_fail_at_construction():
    with pytest.raises(ValueError, match="Invalid learning rate"):
        AlexNetModule(Lookup(3), optimizer=functools.partial(torch.optim.SGD, lr=-0.1))
    with pytest.raises(RuntimeError, match="without an optimizer"):
        AlexNetModule(Lookup(3)).configure_optimizers()


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path, monkeypatch):
    module = AlexNetModule(Lookup(3))
    torch.manual_seed(3)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    expected = torch.rand(3)
    torch.save(checkpoint, tmp_path / "c.pt")
    torch.rand(5)
    module.on_load_checkpoint(torch.load(tmp_path / "c.pt", weights_only=True))
    torch.testing.assert_close(torch.rand(3), expected)


def test_training_reads_metrics_only_on_logging_steps_and_counts_every_batch(tmp_path):
    """Between logging steps nothing is read from the device, yet the epoch error and the image count cover every batch."""
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from alexnet.training.callbacks import ThroughputMonitor, images_in_batch
    from alexnet.training.metrics import is_logging_step

    class AgreesWithLightning(L.Callback):
        """Our public reading of the logging steps against Lightning's private one, before and after each step."""

        seen: ClassVar[list[tuple[bool, bool]]] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            ours = is_logging_step(trainer, batch_idx, stepped=False)
            self.seen.append((ours, trainer._logger_connector.should_update_logs))

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            ours = is_logging_step(trainer, batch_idx, stepped=True)
            self.seen.append((ours, trainer._logger_connector.should_update_logs))

    class Trainable(Lookup):  # the same logits, with a gradient to step on
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 0 * self.fc8.weight.sum()

    torch.manual_seed(0)
    images, labels = torch.randn(28, 3, 2, 2), torch.randint(0, 3, (28,))
    module = AlexNetModule(Trainable(3), optimizer=functools.partial(torch.optim.SGD, lr=0.1), channels_last=False)
    trainer = L.Trainer(
        max_epochs=1, logger=CSVLogger(tmp_path), log_every_n_steps=3, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[ThroughputMonitor(batch_size_fn=images_in_batch, window_size=2), AgreesWithLightning()],
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(images, labels), batch_size=4))  # 7 steps
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [2, 5]  # steps 3 and 6
    assert [int(float(r["train/samples"])) for r in rows if r.get("train/samples")] == [12, 24]  # every batch counted
    expected = (images.flatten(2).mean(-1).argmax(-1) != labels).float().mean().item()
    (epoch,) = [float(r["train/top1_error_epoch"]) for r in rows if r.get("train/top1_error_epoch")]
    assert epoch == pytest.approx(expected)
    # If a Lightning upgrade moves the logging steps, is_logging_step (callbacks and module) must follow.
    assert len(AgreesWithLightning.seen) == 14 and all(
        ours == lightning for ours, lightning in AgreesWithLightning.seen
    )
    assert [ours for ours, _ in AgreesWithLightning.seen].count(True) == 4  # steps 3 and 6, before and after


def test_throughput_is_logged_once_per_logging_step_without_the_validation_time(tmp_path):
    """Gradient accumulation and validation: one throughput row per logged step, at the loss's step, in its epoch."""
    import csv
    import time

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from alexnet.training.callbacks import ThroughputMonitor, images_in_batch

    class SlowValidation(L.Callback):
        def on_validation_batch_end(self, trainer, *args):
            if not trainer.sanity_checking:
                time.sleep(1.5)

    class Trainable(Lookup):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 0 * self.fc8.weight.sum()

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(28, 3, 2, 2), torch.randint(0, 3, (28,)))
    module = AlexNetModule(Trainable(3), optimizer=functools.partial(torch.optim.SGD, lr=0.1), channels_last=False)
    trainer = L.Trainer(
        max_epochs=2, logger=CSVLogger(tmp_path), log_every_n_steps=2, accumulate_grad_batches=2,
        limit_val_batches=2, num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[ThroughputMonitor(images_in_batch, window_size=2), SlowValidation()],
    )  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))  # 4 optimizer steps an epoch
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    losses = [int(r["step"]) for r in rows if r.get("train/loss")]
    timed = [(int(r["step"]), int(r["epoch"]), float(r["train/time"])) for r in rows if r.get("train/time")]
    assert losses == [step for step, _, _ in timed] == [1, 3, 5, 7]  # global steps 2, 4, 6, 8: each once
    assert [epoch for _, epoch, _ in timed] == [0, 0, 1, 1]
    assert timed[2][2] - timed[1][2] < 1.5  # epoch 0's validation (3 s of sleep) is not training time
