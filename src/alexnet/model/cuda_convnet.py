"""The paper's two CIFAR-10 nets, as cuda-convnet's released layer files define them (its ``example-layers/``).

- :class:`CifarConvNet`, §3.1's Figure 1: "a four-layer convolutional neural network", ReLU against tanh.
  cuda-convnet ships one net of four weight layers without normalization, ``layers-19pct.cfg``
  (three 5x5 convolutions of 32, 32 and 64 maps, pooling after each, fc10), and that is this net.
  ``layers-80sec.cfg`` adds a fifth (fc64) and ``layers-18pct.cfg`` response normalization, which Figure 1 does
  not mention; "no regularization of any kind" is its weight costs at 0.
- :class:`CifarLocalNet`, §3.3's CIFAR-10 check of response normalization (13% -> 11% test error):
  ``layers-conv-local-11pct.cfg`` (conv, pool, normalization across maps, conv, normalization, pool, two locally
  connected layers, fc10) on 24x24 crops. ``lrn=False`` drops its two ``cmrnorm`` layers and nothing else,
  so the pair differs in one thing (cuda-convnet's 13% file also narrows local3 to 32 maps).

cuda-convnet's conventions, kept here: pooling windows overhang the edge (``outputsX = ceil((in - size) /
stride) + 1``, PyTorch's ``ceil_mode``) and an average divides by the pixels inside the image; a layer's
``neuron`` follows it (in the 19pct file the first one follows pool1); weights start at N(0, initW) and
biases at 0; ``cmrnorm`` computes ``a / (1 + scale / size * sum a^2) ^ pow`` over ``size`` maps centred on the
map (k = 1, alpha = scale divided by size: ``lrn_style: cuda-convnet`` with its own constants).
Each net also keeps cuda-convnet's per-layer learning rates and weight costs (its ``layer-params`` files):
:meth:`param_groups` hands them to the optimizer.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from alexnet.errors import ConfigError
from alexnet.model.local import LocallyConnected2d
from alexnet.model.lrn import LocalResponseNorm

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
# layer-params-conv-local-11pct.cfg's rnorm1/rnorm2 on layers-conv-local-11pct.cfg's cmrnorm layers.
CMRNORM = {"size": 9, "alpha": 0.001, "beta": 0.75, "k": 1.0, "divide_alpha_by_size": True}
BIAS_LR_SCALE = 2.0  # epsB = 0.002 against epsW = 0.001 in every layer-params file


class _CudaConvnetNet(nn.Module):
    """What both nets share: the init, the layer-wise optimizer groups, the arguments that rebuild them."""

    num_classes: int
    input_size: int  # the square input the net is declared for (its crops)
    init_std: dict[str, float]  # cuda-convnet's initW per layer
    weight_costs: dict[str, float]  # cuda-convnet's wc per layer (weights only; biases have none)
    model_kwargs: dict[str, Any]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.children():  # in the order declared
            x = layer(x)
        return x

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """cuda-convnet's init: weights N(0, initW), biases 0."""
        for name, std in self.init_std.items():
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    def param_groups(self) -> list[dict[str, Any]]:
        """One optimizer group per weight and bias: the layer's weight cost, and the biases' doubled rate.

        ``lr_scale`` multiplies the optimizer's learning rate (:class:`alexnet.training.module.AlexNetModule`
        applies it); ``weight_decay`` is cuda-convnet's ``wc``, which its update adds into the momentum as
        ``torch.optim.SGD`` does.
        """
        groups = []
        for name, cost in self.weight_costs.items():
            layer = getattr(self, name)
            groups.append({"params": [layer.weight], "weight_decay": cost, "lr_scale": 1.0, "name": f"{name}.weight"})
            groups.append({"params": [layer.bias], "weight_decay": 0.0, "lr_scale": BIAS_LR_SCALE,
                           "name": f"{name}.bias"})  # fmt: skip
        return groups


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={activation!r} is not valid; allowed values: {list(ACTIVATIONS)}")


def _check_classes(num_classes: int) -> None:
    if num_classes < 1:
        raise ConfigError(f"model.num_classes={num_classes!r} is not valid; it must be >= 1")


class CifarConvNet(_CudaConvnetNet):
    """Figure 1's four-layer net (cuda-convnet's ``layers-19pct.cfg``) on whole 32x32 images.

    Args:
        num_classes: outputs of fc10.
        activation: "relu" (the solid line) or "tanh" (the dashed one), in every layer.
        weight_cost: the weight decay of every layer; 0, "no regularization of any kind", for Figure 1
            (``layer-params-19pct.cfg`` has 0.004 in the convolutions and 3 in fc10).
    """

    input_size = 32

    def __init__(
        self, num_classes: int = 10, activation: Literal["relu", "tanh"] = "relu", weight_cost: float = 0.0
    ) -> None:
        super().__init__()
        _check_activation(activation)
        _check_classes(num_classes)
        self.model_kwargs = {"num_classes": num_classes, "activation": activation, "weight_cost": weight_cost}
        self.num_classes, self.activation = num_classes, activation
        act = ACTIVATIONS[activation]
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)  # (N, 3, 32, 32) -> (N, 32, 32, 32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # -> (N, 32, 16, 16)
        self.act1 = act()  # pool1's neuron
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)  # -> (N, 32, 16, 16)
        self.act2 = act()
        self.pool2 = nn.AvgPool2d(3, 2, ceil_mode=True)  # -> (N, 32, 8, 8)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)  # -> (N, 64, 8, 8)
        self.act3 = act()
        self.pool3 = nn.AvgPool2d(3, 2, ceil_mode=True)  # -> (N, 64, 4, 4)
        self.flatten = nn.Flatten()  # -> (N, 1024)
        self.fc10 = nn.Linear(64 * 4 * 4, num_classes)  # -> (N, num_classes): the logits
        self.init_std = {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "fc10": 0.01}
        self.weight_costs = dict.fromkeys(self.init_std, weight_cost)
        self.reset_parameters()


class CifarLocalNet(_CudaConvnetNet):
    """§3.3's CIFAR-10 net (cuda-convnet's ``layers-conv-local-11pct.cfg``) on 24x24 crops.

    Args:
        num_classes: outputs of fc10.
        lrn: the two response normalization layers across maps (cuda-convnet's ``cmrnorm``: 9 maps, scale 0.001
            divided by 9, pow 0.75, k 1); ``False`` for the net without normalization.
    """

    input_size = 24

    def __init__(self, num_classes: int = 10, lrn: bool = True) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.model_kwargs = {"num_classes": num_classes, "lrn": lrn}
        self.num_classes, self.lrn = num_classes, lrn

        def norm() -> nn.Module:
            return LocalResponseNorm(**CMRNORM) if lrn else nn.Identity()

        self.conv1 = nn.Conv2d(3, 64, 5, padding=2)  # (N, 3, 24, 24) -> (N, 64, 24, 24)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # -> (N, 64, 12, 12)
        self.norm1 = norm()
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)  # -> (N, 64, 12, 12)
        self.act2 = nn.ReLU()
        self.norm2 = norm()
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)  # -> (N, 64, 6, 6)
        self.local3 = LocallyConnected2d(64, 64, 3, input_size=6, padding=1)  # -> (N, 64, 6, 6)
        self.act3 = nn.ReLU()
        self.local4 = LocallyConnected2d(64, 32, 3, input_size=6, padding=1)  # -> (N, 32, 6, 6)
        self.act4 = nn.ReLU()
        self.flatten = nn.Flatten()  # -> (N, 1152)
        self.fc10 = nn.Linear(32 * 6 * 6, num_classes)  # -> (N, num_classes): the logits
        self.init_std = {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04, "fc10": 0.01}
        # layer-params-conv-local-11pct.cfg's wc: none in the convolutions.
        self.weight_costs = {"conv1": 0.0, "conv2": 0.0, "local3": 0.004, "local4": 0.004, "fc10": 0.01}
        self.reset_parameters()
