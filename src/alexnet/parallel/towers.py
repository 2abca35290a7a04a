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

from alexnet.errors import ConfigError
from alexnet.model import AlexNet
from alexnet.model.lrn import LocalResponseNorm
from alexnet.parallel.collectives import gather_logits, gather_towers

TOWERS = 2
CHECK_EVERY_N_STEPS = 50  # both towers' batches and random states compared (a host sync on GPUs)
SHARDED = (nn.Conv2d, nn.Linear)  # the layers whose kernels or units the towers split


def gather_points(model: AlexNet) -> list[str]:
    """The layers of ``model`` before which a tower gathers both towers' maps, in order.

    From a sharded layer on, a tower holds only its own maps, until a layer of
    ``model.TOWERS_JOIN`` needs both towers' or a dropout comes: dropout acts on the
    gathered units, with the same random stream in both towers, so that its masks are
    the ones the one-process model draws (and the fc layer after it needs no second
    gather). For the paper's net: conv3, fc6, drop6, drop7.
    """
    points, own_maps = [], False  # the image goes to both towers whole
    for name, layer in model.named_children():
        if own_maps and (name in model.TOWERS_JOIN or isinstance(layer, nn.Dropout)):
            points.append(name)
            own_maps = False
        own_maps = own_maps or isinstance(layer, SHARDED)
    return points


def _local(param: Tensor | None) -> Tensor | None:
    return param.to_local() if isinstance(param, DTensor) else param


def _tower_layer(layer: nn.Module, x: Tensor) -> Tensor:
    """One layer of the model on this tower's share of its parameters."""
    if isinstance(layer, nn.Conv2d):  # a tower's half of a grouped layer is one group: groups=1 on its own maps
        return F.conv2d(x, _local(layer.weight), _local(layer.bias), layer.stride, layer.padding)
    if isinstance(layer, nn.Linear):
        return F.linear(x, _local(layer.weight), _local(layer.bias))
    return layer(x)


class AlexNetTower(nn.Module):
    """This process's tower of :class:`alexnet.model.AlexNet` (two towers, grouped: the paper's net).

    Takes over the model's layers, so parameter names stay ``conv1.weight`` ... ``fc8.bias``;
    each parameter becomes a DTensor holding this tower's rows (kernels, or fc units/classes).
    """

    def __init__(self, model: AlexNet, mesh: DeviceMesh) -> None:
        super().__init__()
        kwargs = getattr(model, "model_kwargs", {})
        if kwargs.get("towers") != TOWERS or not kwargs.get("grouped"):
            raise ConfigError(
                "trainer=towers splits the paper's two-tower net (model.towers=2, model.grouped=true); "
                "this model has no towers to split. Train it with trainer=ddp instead."
            )
        self.model_kwargs, self.num_classes, self.towers = model.model_kwargs, model.num_classes, TOWERS
        self.gather_points = gather_points(model)
        self._steps = 0  # training forwards in this process, for the periodic check
        self.towers_group = mesh["tensor_parallel"].get_group()
        placements = [Replicate(), Shard(0)]  # same on every replica, split between the towers
        for name, layer in model.named_children():
            if isinstance(layer, LocalResponseNorm):  # a tower sees only its own maps: one group
                layer = layer.one_group()
            if isinstance(layer, SHARDED):
                for key, param in list(layer.named_parameters(recurse=False)):
                    setattr(layer, key, nn.Parameter(distribute_tensor(param.detach(), mesh, placements)))
            self.add_module(name, layer)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self._steps % CHECK_EVERY_N_STEPS == 0:
            self._check_towers_agree(x)
        self._steps += self.training
        for name, layer in self.named_children():  # the model's layers, in its order
            if name in self.gather_points:
                x = gather_towers(x, self.towers_group)
            x = _tower_layer(layer, x)
        return gather_logits(x, self.num_classes, self.towers_group)  # this tower's share of the classes

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
            raise ConfigError(
                f"trainer=towers needs an even number of processes (one per tower, in pairs); got "
                f"{processes}. Set trainer.devices (x trainer.num_nodes) to 2, 4, 6, ..."
            )
        # Private: ModelParallelStrategy takes the replica count only when built, and its "auto" means one per
        # node; the world size is known only now. tests/parallel/test_parallel.py's 2 x 2 towers test fails if it moves.
        self._data_parallel_size = processes // TOWERS
        super().setup_environment()

    def post_backward(self, closure_loss: Tensor) -> None:
        super().post_backward(closure_loss)
        sync_replica_gradients(self.lightning_module, self.device_mesh["data_parallel"].get_group())
