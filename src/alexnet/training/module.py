"""The LightningModule: cross-entropy training with the paper's error metrics (§5, §6).

Errors, not accuracies, because the paper reports top-1 and top-5 *error*; their keys are
:mod:`alexnet.metric_names`'. The test step scores the centre crop and the ten-patch average (§4.1: softmax
averaged over four corners, centre and their reflections) in one pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import Metric

from alexnet import metric_names
from alexnet.checkpoint import DescribesInputs, model_identity, run_entries
from alexnet.data.resumable import host_rng_states, set_host_rng_states
from alexnet.data.transforms import SubtractMean
from alexnet.errors import ConfigError
from alexnet.model import build_net
from alexnet.parallel import AlexNetTower
from alexnet.training.metrics import TopKError, is_logging_step, top_k_errors

CENTRE = 4  # TenCrop's order: four corners, centre, then the reflected five (a test batch of one view: that view)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def _module_dict(metrics: dict[int, TopKError]) -> nn.ModuleDict:
    return nn.ModuleDict({str(k): metric for k, metric in metrics.items()})


class AlexNetModule(L.LightningModule):
    """Trains any classifier the paper's way; ``model`` is usually :class:`alexnet.model.AlexNet`.

    Args:
        model: the network, with its class count as ``num_classes`` (its state dict keys
            become ``model.<name>`` in checkpoints). A net of :data:`alexnet.model.NETS` also
            gives its ``model_kwargs``, which checkpoints store with its class name to rebuild it
            (:mod:`alexnet.checkpoint`) and from which its FLOPs are counted (at its ``input_size``).
            A net with ``param_groups()`` (the CIFAR-10 nets) gets one optimizer group per parameter, with its
            own weight decay and ``lr_scale`` times the learning rate (cuda-convnet's per-layer ``epsW``/``wc``).
        optimizer: ``params -> Optimizer`` (a Hydra ``_partial_``); built once here as well,
            so an invalid lr or weight decay fails before any data is read. None to evaluate only.
        scheduler: ``optimizer -> LR scheduler`` or None (checked here too). ReduceLROnPlateau
            watches ``monitor``.
        monitor: the metric the scheduler watches (§5: the validation error).
        channels_last: run convolutions in NHWC, faster on CPUs and tensor cores.
        compile: ``torch.compile`` the net in place (checkpoints keep its plain names). None: on
            CUDA, not on a CPU, where compiling costs a minute and gained little (``python benchmarks/bench.py``).
            Not with ``trainer=towers``, whose layers exchange maps between processes.
        config: the resolved run configuration, stored in checkpoints for the record and sent to the loggers.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        monitor: str = metric_names.VAL_TOP1_ERROR,
        channels_last: bool = True,
        compile: bool | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config or {}})
        self.model = model
        self.num_classes: int = model.num_classes
        self.model_kwargs: dict[str, Any] | None = getattr(model, "model_kwargs", None)
        self.model_name = type(model).__name__
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor, self.channels_last, self.compile_model = monitor, channels_last, compile
        if optimizer is not None:
            try:
                probe = optimizer(self._parameters_to_optimize())
            except (ValueError, TypeError) as error:
                raise ConfigError(f"invalid optimizer setting: {error} (see the optimizer.* keys)") from error
            try:
                if scheduler is not None:
                    scheduler(probe)
            except (ValueError, TypeError) as error:
                raise ConfigError(f"invalid scheduler setting: {error} (see the scheduler.* keys)") from error
        num_classes = self.num_classes
        # Per-step training errors over all processes' images too, not just rank 0's.
        self.train_errors = _module_dict(top_k_errors(num_classes, dist_sync_on_step=True))
        self.val_errors = _module_dict(top_k_errors(num_classes))
        # The lowest validation top-1 error of the run so far, resumes included (in its checkpoints): the
        # run's result where no ModelCheckpoint monitors it (experiment=cifar_fig1 keeps no checkpoints).
        self.best_val_top1_error = float("inf")
        self.crop_errors = nn.ModuleDict({crop: _module_dict(top_k_errors(num_classes)) for crop in metric_names.CROPS})
        # Ten-patch top-1 error of each class, for the report of the worst classes.
        self.class_errors = TopKError(num_classes, 1, average="none")
        self._counted: dict[str, dict[str, torch.Tensor]] | None = None  # training error counts of a resumed epoch
        self._mid_epoch = False  # some of the epoch's batches taken, not all: its checkpoints carry the counts
        self.flops_per_batch: int | None = None  # read by ThroughputMonitor after each batch
        self._flops_per_image: dict[str, int] = {}

    @property
    def model_identity(self) -> dict[str, Any] | None:
        """The net's class and arguments (:func:`alexnet.checkpoint.model_identity`): which checkpoints are of it."""
        return None if self.model_kwargs is None else model_identity(self.model_name, self.model_kwargs)

    def _parameters_to_optimize(self) -> Any:
        param_groups = getattr(self.model, "param_groups", None)
        return param_groups() if callable(param_groups) else self.model.parameters()

    def setup(self, stage: str) -> None:
        """FLOPs per image, forward and forward+backward, for ThroughputMonitor's FLOP/s and MFU."""
        if self.model_kwargs is None or self._flops_per_image:  # unknown architecture, or measured already
            return
        size = self.model.input_size
        with torch.device("meta"):
            model = build_net(self.model_name, self.model_kwargs)  # same architecture, no memory
            image = torch.empty(1, 3, size, size)
        self._flops_per_image = {
            "forward": measure_flops(model, lambda: model(image)),
            "train": measure_flops(model, lambda: model(image), torch.Tensor.sum),
        }

    def _count_flops(self, images: int, kind: str) -> None:
        per_image = self._flops_per_image.get(kind)
        self.flops_per_batch = per_image * images if per_image else None

    def configure_model(self) -> None:
        """Lightning calls this once per process before training; ``trainer=towers`` splits the model here."""
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.device_mesh is not None and not isinstance(self.model, AlexNetTower):
            self.model = AlexNetTower(self.model, self.device_mesh)
            # FLOPs per process, measured in setup() just before: a tower is half the net.
            self._flops_per_image = {k: v // self.model.towers for k, v in self._flops_per_image.items()}
            # Both towers of a replica see the same images: metrics count each image once, per replica.
            replicas = self.device_mesh["data_parallel"].get_group()
            for metric in self.modules():
                if isinstance(metric, Metric):
                    metric.process_group = replicas
        elif self.compile_model or (self.compile_model is None and self.trainer.strategy.root_device.type == "cuda"):
            self.model.compile()

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        self._count_flops(images.shape[0], "train")
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        # Between logging steps nothing leaves the device: the errors accumulate there, and the
        # host never waits for the GPU. On logging steps the values are read, over all processes.
        logging = is_logging_step(self.trainer, batch_idx, stepped=False)
        # Before the callbacks' checkpoints of this batch (StepCheckpoint, RequeueCheckpoint): they resume mid-epoch.
        self._mid_epoch = batch_idx + 1 < self.trainer.num_training_batches
        for k, metric in self.train_errors.items():
            if logging:  # accumulates, and this batch's value
                self.log(metric_names.top_k_error("train", int(k), reduction="step"), metric(logits.detach(), labels))
            else:
                metric.update(logits.detach(), labels)
            self.log(metric_names.top_k_error("train", int(k), reduction="epoch"), metric, on_step=False, on_epoch=True)
        if logging:
            self.log(metric_names.TRAIN_LOSS, loss, prog_bar=True, sync_dist=True)  # the mean over all processes
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        self._count_flops(images.shape[0], "forward")
        logits = self(images)
        for metric in self.val_errors.values():
            metric.update(logits, labels)
        self.log(metric_names.VAL_LOSS, F.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        for k, metric in self.val_errors.items():
            self.log(metric_names.top_k_error("val", int(k)), metric, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        patches, labels = batch  # (N, 10, 3, 227, 227), or (N, 1, 3, H, W): one view, scored as both
        n, crops = patches.shape[:2]
        self._count_flops(n * crops, "forward")
        logits = self(patches.flatten(0, 1)).view(n, crops, -1).float()
        probs = logits.softmax(-1)
        scores = {"centre_crop": probs[:, CENTRE if crops > CENTRE else 0], "ten_crop": probs.mean(1)}
        for crop, errors in self.crop_errors.items():
            for k, metric in errors.items():
                metric.update(scores[crop], labels)
                self.log(metric_names.top_k_error("test", int(k), crop=crop), metric)
        self.class_errors.update(scores["ten_crop"], labels)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            error = float(self.val_errors[str(metric_names.TOP_K[0])].compute())
            self.best_val_top1_error = min(self.best_val_top1_error, error)

    def on_test_epoch_start(self) -> None:
        self.class_errors.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        if self.optimizer_factory is None:
            raise RuntimeError("AlexNetModule was built without an optimizer: it can evaluate, not train")
        factory = self.optimizer_factory
        if self.device_mesh is not None and getattr(factory, "keywords", {}).get("fused"):
            # Towers' parameters are DTensors, and DTensor has no rule for fused SGD's kernel.
            factory = functools.partial(factory, fused=None)
        optimizer = factory(self._parameters_to_optimize())
        for group in optimizer.param_groups:  # a net's own rates per layer (cuda-convnet's epsB = 2 epsW)
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "monitor": self.monitor, "interval": "epoch"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if not isinstance(scheduler, ReduceLROnPlateau):  # that one steps in on_train_epoch_end
            super().lr_scheduler_step(scheduler, metric)

    def on_train_epoch_end(self) -> None:
        """§5's lr division, when the validation error stops improving, before the epoch's checkpoint is written.

        Lightning steps a plateau scheduler after the epoch's checkpoint (a run resumed from it
        would never take that step) and not at all in an epoch a run resumed into.
        """
        for config in self.trainer.lr_scheduler_configs:
            value = self.trainer.callback_metrics.get(config.monitor or "")
            if isinstance(config.scheduler, ReduceLROnPlateau) and value is not None:
                config.scheduler.step(value)

    # Exact resume: the checkpoint carries the RNG states, put back on load. The data
    # loaders never draw from them (alexnet.data.resumable), so dropout masks continue
    # exactly as in an unbroken run, from an epoch's end or from the middle of one.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.model_kwargs is not None:  # what rebuilds and feeds the model (alexnet.checkpoint)
            data = self.trainer.datamodule
            if isinstance(data, DescribesInputs) and isinstance(data.normalization, SubtractMean):
                checkpoint.update(run_entries(self.model_kwargs, data.normalization, data.classes, data.class_names(),
                                              self.model_name))  # fmt: skip
            else:  # data of another kind: the net alone
                checkpoint.update(run_entries(self.model_kwargs, model_name=self.model_name))
        if self._counted is not None:  # restored, not yet counted on (a checkpoint before the resumed epoch's batch)
            checkpoint["train_error_states"] = self._counted
        elif self._mid_epoch:  # between two steps of an epoch: what its training error has counted so far
            checkpoint["train_error_states"] = self._train_error_states()
        checkpoint["best_val_top1_error"] = self.best_val_top1_error
        checkpoint["rng_states"] = {
            **host_rng_states(),
            # This device's generator only: every process restores rank 0's states, and the two
            # towers of a pair must keep drawing the same dropout masks after a resume.
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        }

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        counted, self._counted = self._counted, None
        if counted is None or self.global_rank != 0:  # the sums of all processes: on one
            return
        for k, states in counted.items():
            metric = self.train_errors[k]
            for name, state in states.items():
                setattr(metric, name, state.to(getattr(metric, name).device))

    def _train_error_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The epoch's training error counts so far, summed over the processes (every process calls this).

        Over the group the metric syncs over (``trainer=towers``: the replicas; the towers of one count
        the same images), as its own epoch value does.
        """
        reduce = self.trainer.strategy.reduce
        return {
            k: {
                name: reduce(state.clone(), group=metric.process_group, reduce_op="sum").cpu()
                for name, state in metric.metric_state.items()
            }
            for k, metric in self.train_errors.items()
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint from the middle of an epoch: the epoch's training error goes on counting from there
        # (Figure 1's curve), from its first batch (Lightning resets the logged metrics before it).
        self._counted = checkpoint.get("train_error_states")
        self.best_val_top1_error = checkpoint.get("best_val_top1_error", float("inf"))
        states = checkpoint.get("rng_states")
        if states is None:
            return
        set_host_rng_states(states)
        cuda = states["cuda"]
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda)
