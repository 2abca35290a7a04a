"""The networks: AlexNet (§3), the paper's two CIFAR-10 nets (§3.1, §3.3), and their layers (LRN with its fused
kernels in ``kernels/``, the locally connected layer)."""

from typing import Any

from torch import nn

from alexnet.errors import CheckpointError
from alexnet.model.alexnet import AlexNet, count_parameters
from alexnet.model.cuda_convnet import CifarConvNet, CifarLocalNet
from alexnet.model.local import LocallyConnected2d
from alexnet.model.lrn import LocalResponseNorm

# A checkpoint's ``model_name`` -> the class that ``model_kwargs`` rebuild (alexnet.checkpoint).
NETS: dict[str, type[nn.Module]] = {net.__name__: net for net in (AlexNet, CifarConvNet, CifarLocalNet)}


def build_net(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """The net ``name`` (a key of :data:`NETS`) with its arguments, as a checkpoint stores them."""
    if name not in NETS:
        raise CheckpointError(f"unknown net {name!r} in the checkpoint; this version knows {sorted(NETS)}")
    return NETS[name](**kwargs)


__all__ = [
    "NETS", "AlexNet", "CifarConvNet", "CifarLocalNet", "LocalResponseNorm", "LocallyConnected2d", "build_net",
    "count_parameters",
]  # fmt: skip
