"""A few SGD steps of the paper's net on fixed random batches: one process, DDP, or towers.

Run by tests/parallel/test_parallel.py, one process directly and the others through torchrun:

    python tests/parallel/parallel_run.py --out DIR --batch 8
    python -m torch.distributed.run --standalone --nproc-per-node 4 tests/parallel/parallel_run.py \
        --out DIR --batch 4 --strategy towers

Writes DIR/losses.json (the loss of each step, averaged over processes) and
checkpoints after steps 1 and 3 (DIR/step_N.ckpt), from which the test compares
gradients and parameters. The images are the same for every run; a replica of a 2x2 run
reads every other image, so two replicas of batch 4 see the single run's batch 8.
"""

# No ``from __future__ import annotations``: DDP checks that a comm hook's ``bucket`` is
# annotated with the class dist.GradBucket itself, not with a string.
import argparse
import json
import os
from collections import defaultdict
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from alexnet.model import AlexNet
from alexnet.parallel import TowersStrategy, collectives, towers
from alexnet.training.module import AlexNetModule

# Bytes handed to each kind of collective (all-gather: a process's own piece; reduce-scatter and
# all-reduce: the whole buffer) and calls, while recording: what alexnet.parallel.communication predicts.
PAYLOAD: defaultdict = defaultdict(int)
CALLS: defaultdict = defaultdict(int)
RECORDING = False


def count(kind: str, tensor: torch.Tensor) -> None:
    if RECORDING:
        PAYLOAD[kind] += tensor.numel() * tensor.element_size()
        CALLS[kind] += 1


class CountingCollectives:
    """torch.distributed as alexnet.parallel's modules see it, with their collectives counted.

    The towers' consistency check (int64 sums) is counted apart from the activations.
    """

    def __getattr__(self, name: str):
        return getattr(dist, name)

    def all_gather_into_tensor(self, output, input, **kwargs):
        count("consistency_check" if input.dtype == torch.int64 else "all_gather", input)
        return dist.all_gather_into_tensor(output, input, **kwargs)

    def reduce_scatter_tensor(self, output, input, **kwargs):
        count("reduce_scatter", input)
        return dist.reduce_scatter_tensor(output, input, **kwargs)

    def all_reduce(self, tensor, **kwargs):
        count("all_reduce", tensor)
        return dist.all_reduce(tensor, **kwargs)


@contextmanager
def recording():
    """Count alexnet.parallel's collectives (not Lightning's or torchmetrics' own) inside the block."""
    global RECORDING
    collectives.dist = towers.dist = CountingCollectives()
    RECORDING = True
    try:
        yield
    finally:
        RECORDING = False
        collectives.dist = towers.dist = dist


def counting_allreduce_hook(
    process_group: dist.ProcessGroup, bucket: dist.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """DDP's default gradient all-reduce (mean), counting each bucket's bytes."""
    count("all_reduce", bucket.buffer())
    return allreduce_hook(process_group, bucket)


class CountingDDP(DDPStrategy):
    """DDP whose gradient all-reduce is counted (Lightning registers comm hooks on CUDA only)."""

    def _register_ddp_hooks(self) -> None:
        self.model.register_comm_hook(None, counting_allreduce_hook)


STRATEGIES = {"single": lambda: "auto", "ddp": CountingDDP, "towers": TowersStrategy}
SEED = 7


class SaveAt(L.Callback):
    """DIR/step_N.ckpt after the steps asked for (every process takes part: towers gather their shards)."""

    def __init__(self, out: Path, steps: list[int]) -> None:
        self.out, self.steps = out, set(steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step in self.steps:
            trainer.save_checkpoint(self.out / f"step_{trainer.global_step}.ckpt")


class RecordLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean").item())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=4, help="images per step and replica")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--images", type=int, default=24, help="size of the fixed data set")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--classes", type=int, default=10, help="odd: the towers hold unequal shares of fc8")
    parser.add_argument("--strategy", choices=["single", "ddp", "towers"], default="single")
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    parser.add_argument("--count-bytes", action="store_true", help="write DIR/comm.json (rank 0's collectives)")
    parser.add_argument("--save-at", type=int, nargs="*", default=[1, 3], help="steps after which to checkpoint")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    L.seed_everything(SEED)
    data = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, 227, 227, generator=data)
    labels = torch.randint(0, args.classes, (args.images,), generator=data)
    dataset = TensorDataset(images, labels)
    # Distributed, Lightning shuffles with DistributedSampler(seed=PL_GLOBAL_SEED) and gives replica r every
    # other image from r on; one process gets the same order from the same sampler.
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, seed=SEED) if args.strategy == "single" else None
    loader = DataLoader(dataset, batch_size=args.batch, sampler=sampler)

    model = AlexNet(num_classes=args.classes, dropout=args.dropout, init="kaiming")
    module = AlexNetModule(
        model, optimizer=partial(torch.optim.SGD, lr=0.001, momentum=0.9, weight_decay=5e-4), channels_last=False
    )
    record = RecordLosses()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),  # torchrun's --nproc-per-node
        strategy=STRATEGIES[args.strategy](),
        precision="32-true",
        max_steps=args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,  # only SaveAt's checkpoints, in DIR
        callbacks=[record, SaveAt(args.out, args.save_at)],
    )
    # The towers' strategy re-seeds when the processes connect; the same here keeps dropout masks equal.
    L.seed_everything(SEED)
    with recording():
        trainer.fit(module, train_dataloaders=loader, ckpt_path=args.resume)
    if trainer.global_rank == 0:
        (args.out / "losses.json").write_text(json.dumps(record.losses))
        if args.count_bytes:
            (args.out / "comm.json").write_text(json.dumps({"payload": PAYLOAD, "calls": CALLS}))
    if torch.distributed.is_initialized():  # gloo's threads stopped before exit, or a loaded machine aborts a rank
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
