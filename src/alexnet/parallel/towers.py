"""The paper's model parallelism: one tower per process, exchanging maps where the towers connect.

§3.2 puts half of every layer's kernels on each of two GPUs; the GPUs exchange
activations only at the input of conv3 and of the fully connected layers. Here
each process of a ``towers`` pair holds its half of every layer: the
single-process model's parameters, sharded on their first (output) dimension
as DTensors over the ``tensor_parallel`` dimension of Lightning's device mesh.
Because the parameters keep their names and their global shapes, Lightning's
:class:`~lightning.pytorch.strategies.ModelParallelStrategy` gathers them into
ordinary full tensors when it saves a checkpoint and scatters full tensors
back when it loads one: checkpoints move freely between this strategy, DDP and
one process.

With more than two processes, pairs of towers are replicated over the mesh's
``data_parallel`` dimension (4 processes: 2 towers x 2 replicas); each replica
reads its own share of the batch and the replicas average their gradients.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.nn import functional as F

from alexnet.lrn import LocalResponseNorm
from alexnet.parallel.collectives import CommLog, gather_logits, gather_towers

TOWERS = 2
CHECK_EVERY_N_STEPS = 50  # both towers' batches and random states compared (a host sync on GPUs)
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def _local(param: Tensor | None) -> Tensor | None:
    return param.to_local() if isinstance(param, DTensor) else param


def _conv(layer: nn.Conv2d, x: Tensor) -> Tensor:
    # A tower's half of a grouped layer is one group: groups=1 on its own maps.
    return F.conv2d(x, _local(layer.weight), _local(layer.bias), layer.stride, layer.padding)


def _linear(layer: nn.Linear, x: Tensor) -> Tensor:
    return F.linear(x, _local(layer.weight), _local(layer.bias))


class AlexNetTower(nn.Module):
    """This process's tower of :class:`alexnet.model.AlexNet` (two towers, grouped: the paper's net).

    Takes over the model's layers, so parameter names stay ``conv1.weight`` ... ``fc8.bias``;
    each parameter becomes a DTensor holding this tower's rows (kernels, or fc units/classes).
    """

    def __init__(self, model: nn.Module, mesh: DeviceMesh) -> None:
        super().__init__()
        if getattr(model, "towers", None) != TOWERS or model.conv2.groups != TOWERS:
            raise ValueError(
                "trainer=towers splits the paper's two-tower net (model.towers=2, model.grouped=true); "
                "this model has no towers to split. Train it with trainer=ddp instead."
            )
        self.towers = TOWERS
        self._steps = 0  # training forwards in this process, for the periodic check
        self.towers_group = mesh["tensor_parallel"].get_group()
        self.num_classes = model.fc8.out_features
        placements = [Replicate(), Shard(0)]  # same on every replica, split between the towers
        for name, child in model.named_children():
            if isinstance(child, LocalResponseNorm):  # a tower sees only its own maps: one group
                child = LocalResponseNorm(child.size, child.alpha, child.beta, child.k, child.divide_alpha_by_size)
            self.add_module(name, child)
        for name in LAYERS:
            layer = getattr(self, name)
            for key, param in list(layer.named_parameters(recurse=False)):
                setattr(layer, key, nn.Parameter(distribute_tensor(param.detach(), mesh, placements)))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self._steps % CHECK_EVERY_N_STEPS == 0:
            self._check_towers_agree(x)
        self._steps += self.training
        x = self.pool1(self.norm1(self.act1(_conv(self.conv1, x))))  # the image goes to both towers
        x = self.pool2(self.norm2(self.act2(_conv(self.conv2, x))))
        x = gather_towers(x, self.towers_group)  # conv3 sees both towers' maps
        x = self.act4(_conv(self.conv4, self.act3(_conv(self.conv3, x))))
        x = self.pool5(self.act5(_conv(self.conv5, x)))
        x = torch.flatten(gather_towers(x, self.towers_group), 1)  # fc6 sees both towers
        # Dropout acts on the gathered units, with the same random stream in both towers,
        # so the masks are the ones the single-process model draws.
        x = self.drop6(gather_towers(self.act6(_linear(self.fc6, x)), self.towers_group))
        x = self.drop7(gather_towers(self.act7(_linear(self.fc7, x)), self.towers_group))
        return gather_logits(_linear(self.fc8, x), self.num_classes, self.towers_group)

    @torch.no_grad()
    def _check_towers_agree(self, x: Tensor) -> None:
        """Both towers must see the same images and draw the same dropout masks, or training is silently wrong.

        Checked on the first step and every ``CHECK_EVERY_N_STEPS`` after it.
        """
        rng = (torch.cuda.get_rng_state() if x.is_cuda else torch.get_rng_state()).long()
        # Integer sums of the raw bits are exact in any order (int64 wraps the same way everywhere);
        # the second, weighted by position in the batch, also tells a reordered batch.
        bits = x.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()])
        per_image = bits.sum(dim=tuple(range(1, bits.dim())), dtype=torch.int64)  # no copy of the batch
        position = torch.arange(1, len(per_image) + 1, device=x.device)
        rng = rng.to(x.device)
        mine = torch.stack([per_image.sum(), (per_image * position).sum(), rng.sum(), rng[::7].sum()])
        both = mine.new_empty(TOWERS * mine.numel())
        CommLog.add("consistency_check", mine)
        dist.all_gather_into_tensor(both, mine, group=self.towers_group)
        if not torch.equal(*both.view(TOWERS, -1)):
            what = ["images", "images", "random state", "random state"]
            differ = sorted({what[i] for i in range(len(what)) if both[i] != both[len(what) + i]})
            raise RuntimeError(
                f"the two towers of a replica differ in their {' and '.join(differ)}. Both processes of a "
                "tower pair must load the same batch: keep the data loading deterministic per data-parallel rank "
                "(no rank-dependent seeds or samplers)."
            )


def sync_replica_gradients(module: nn.Module, group: dist.ProcessGroup) -> None:
    """Average each tower's gradients over the data-parallel replicas, in one flat all-reduce."""
    grads = [_local(p.grad) for p in module.parameters() if p.grad is not None]
    if not grads or dist.get_world_size(group) == 1:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    CommLog.add("all_reduce", flat)
    dist.all_reduce(flat, group=group)
    flat /= dist.get_world_size(group)
    for g, new in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(new.view_as(g))


class TowersStrategy(ModelParallelStrategy):
    """Lightning's ModelParallelStrategy on a (data_parallel x 2 towers) mesh for the paper's net.

    The towers dimension is always 2 (the paper's); every further pair of processes is
    a data-parallel replica: 2 devices are one pair, 4 devices two pairs, and so on
    across nodes. Checkpoints are saved as one file of full tensors by default, the
    same file one process writes; ``save_distributed_checkpoint=true`` writes a folder
    of shards instead (faster at scale; ``python -m lightning.pytorch.utilities.consolidate_checkpoint``
    makes the single file of it that ``eval.py`` and ``ckpt_path=`` read).
    """

    def __init__(self, save_distributed_checkpoint: bool = False, **kwargs: Any) -> None:
        super().__init__(
            data_parallel_size="auto",  # set from the world size once it is known
            tensor_parallel_size=TOWERS,
            save_distributed_checkpoint=save_distributed_checkpoint,
            **kwargs,
        )

    def setup_environment(self) -> None:
        processes = self.num_nodes * self.num_processes
        if processes % TOWERS:
            raise ValueError(
                f"trainer=towers needs an even number of processes (one per tower, in pairs); got "
                f"{processes}. Set trainer.devices (x trainer.num_nodes) to 2, 4, 6, ..."
            )
        self._data_parallel_size = processes // TOWERS
        super().setup_environment()

    def post_backward(self, closure_loss: Tensor) -> None:
        super().post_backward(closure_loss)
        sync_replica_gradients(self.lightning_module, self.device_mesh["data_parallel"].get_group())
