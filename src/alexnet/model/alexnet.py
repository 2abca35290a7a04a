"""AlexNet as §3 and Figure 2 of the paper define it, with each ablation as an argument.

The paper's two towers run here in one process: a layer whose kernels see only
their own tower's maps is a convolution with ``groups=2`` (channels ``[0, C/2)``
are tower one, ``[C/2, C)`` tower two), each tower's response normalization
sees only its own maps (``LocalResponseNorm(groups=2)``), and a layer where the
towers connect (conv3, fc6, fc7, fc8) is an ordinary full layer.
:mod:`alexnet.parallel` splits the same parameters over two processes. Layer names follow the paper
(conv1..conv5, fc6..fc8), so checkpoints and logs speak its language.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from alexnet.errors import ConfigError
from alexnet.model.lrn import LocalResponseNorm

# Kernels per conv layer (conv1..conv5).
WIDTHS = {
    "two towers": (96, 256, 384, 384, 256),
    # §3.2's one-GPU comparison net: half the kernels in conv1-conv4, conv5 and
    # the fully connected layers kept at full size.
    "one tower": (48, 128, 192, 192, 256),
}
# LocalResponseNorm's constants for each reading of §3.3.
LRN_STYLES = {
    "paper": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},  # §3.3
    "cuda-convnet": {
        "size": 5,
        "alpha": 1e-4,
        "beta": 0.75,
        "k": 2.0,
        "divide_alpha_by_size": True,
    },  # released configs
    "caffe": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0, "divide_alpha_by_size": True},  # bvlc_alexnet
}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
INITS = ("paper", "caffe", "kaiming")
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")  # §5: "initialized with the constant 1"


def _check(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"model.{name}={value!r} is not valid; allowed values: {list(allowed)}")


class AlexNet(nn.Module):
    """The paper's network; every keyword switches one ablation.

    The layers are declared in the order they run, and that declaration is the net:
    ``forward`` applies them one after another, and :class:`alexnet.parallel.AlexNetTower`
    and :mod:`alexnet.parallel.communication` read the same list (with ``TOWERS_JOIN``).

    Args:
        num_classes: outputs of fc8.
        towers: 2 for the paper's net, 1 for its one-GPU comparison net
            (48-128-192-192-256 kernels, 59,798,312 parameters at 1000 classes).
        grouped: with two towers, keep conv2, conv4 and conv5 within their tower
            (``groups=2``, the paper). ``False`` connects the towers everywhere:
            the 96-256-384-384-256 net most ports call AlexNet.
        lrn: local response normalization after conv1 and conv2 (§3.3).
        lrn_style: "paper", or the "cuda-convnet"/"caffe" constants (alpha / n; caffe also k=1).
        overlap: 3x3 stride-2 max-pooling (§3.4); ``False`` pools 2x2 stride 2.
        dropout: probability on the inputs of fc7 and fc8 (§4.2); 0 removes it.
        activation: "relu" (§3.1) or "tanh" (Figure 1's comparison).
        init: "paper" (N(0, 0.01), biases 1 in conv2/4/5 and fc6/7), "caffe" (same,
            those biases 0.1) or "kaiming" (He normal, biases 0).
    """

    # The layers whose input is both towers' maps (§3.2, Figure 2): everywhere else a tower sees only its own.
    TOWERS_JOIN = ("conv3", "fc6", "fc7", "fc8")
    input_size = 227  # the crops it is declared for (§4.1's "224" cannot give conv1 55x55 maps)

    def __init__(
        self,
        num_classes: int = 1000,
        towers: int = 2,
        grouped: bool = True,
        lrn: bool = True,
        lrn_style: Literal["paper", "cuda-convnet", "caffe"] = "paper",
        overlap: bool = True,
        dropout: float = 0.5,
        activation: Literal["relu", "tanh"] = "relu",
        init: Literal["paper", "caffe", "kaiming"] = "paper",
    ) -> None:
        super().__init__()
        _check("towers", towers, (1, 2))
        _check("lrn_style", lrn_style, tuple(LRN_STYLES))
        _check("activation", activation, tuple(ACTIVATIONS))
        _check("init", init, INITS)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout!r} is not valid; allowed values: 0 <= dropout < 1")
        if num_classes < 1:
            raise ConfigError(f"model.num_classes={num_classes!r} is not valid; it must be >= 1")
        # The arguments that rebuild this net: AlexNet(**model.model_kwargs) (checkpoints store them).
        self.model_kwargs = {
            "num_classes": num_classes, "towers": towers, "grouped": grouped, "lrn": lrn, "lrn_style": lrn_style,
            "overlap": overlap, "dropout": dropout, "activation": activation, "init": init,
        }  # fmt: skip
        self.num_classes, self.towers, self.activation = num_classes, towers, activation
        c1, c2, c3, c4, c5 = WIDTHS["two towers" if towers == 2 else "one tower"]
        g = 2 if towers == 2 and grouped else 1
        act = ACTIVATIONS[activation]
        pool = (3, 2) if overlap else (2, 2)

        def norm() -> nn.Module:
            # Each tower normalizes its own maps (LocalResponseNorm's groups).
            return LocalResponseNorm(**LRN_STYLES[lrn_style], groups=g) if lrn else nn.Identity()

        # Shapes for the paper's net (two towers, overlapping pooling).
        self.conv1 = nn.Conv2d(3, c1, 11, stride=4)  # (N, 3, 227, 227) -> (N, 96, 55, 55); both towers see the image
        self.act1 = act()
        self.norm1 = norm()
        self.pool1 = nn.MaxPool2d(*pool)  # -> (N, 96, 27, 27)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=g)  # -> (N, 256, 27, 27)
        self.act2 = act()
        self.norm2 = norm()
        self.pool2 = nn.MaxPool2d(*pool)  # -> (N, 256, 13, 13)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)  # -> (N, 384, 13, 13); the towers connect
        self.act3 = act()
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=g)  # -> (N, 384, 13, 13)
        self.act4 = act()
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=g)  # -> (N, 256, 13, 13)
        self.act5 = act()
        self.pool5 = nn.MaxPool2d(*pool)  # -> (N, 256, 6, 6)
        self.flatten = nn.Flatten()  # -> (N, 9216)
        self.fc6 = nn.Linear(c5 * 6 * 6, 4096)  # -> (N, 4096); the towers connect in every fc layer
        self.act6 = act()
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)  # -> (N, 4096)
        self.act7 = act()
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)  # -> (N, num_classes): the logits
        self.reset_parameters(init)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.children():  # in the order declared
            x = layer(x)
        return x

    def last_hidden(self, x: Tensor) -> Tensor:
        """conv1..act7: a (N, 3, 227, 227) image batch to (N, 4096) fc7 activations.

        §6.1 finds the training images most similar to an image by the Euclidean distance of these vectors.
        """
        layers = list(self.children())
        for layer in layers[: layers.index(self.drop7)]:
            x = layer(x)
        return x

    @torch.no_grad()
    def reset_parameters(self, init: str = "paper") -> None:
        """Initialize every layer the way ``init`` names (see the class docstring)."""
        _check("init", init, INITS)
        for name, layer in self.named_children():
            if not isinstance(layer, (nn.Conv2d, nn.Linear)):
                continue
            if init == "kaiming":
                nonlinearity = "linear" if name == "fc8" else self.activation  # fc8 feeds the softmax
                nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
                nn.init.zeros_(layer.bias)
            else:
                nn.init.normal_(layer.weight, std=0.01)
                bias = (1.0 if init == "paper" else 0.1) if name in BIAS_ONE else 0.0
                nn.init.constant_(layer.bias, bias)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (60,965,224 for the paper's net)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
