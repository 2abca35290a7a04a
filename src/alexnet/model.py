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

from alexnet.lrn import LocalResponseNorm

# Kernels per conv layer (conv1..conv5).
WIDTHS = {
    "two towers": (96, 256, 384, 384, 256),
    # §3.2's one-GPU comparison net: half the kernels in conv1-conv4, conv5 and
    # the fully connected layers kept at full size.
    "one tower": (48, 128, 192, 192, 256),
}
# (size, alpha, beta, k, divide_alpha_by_size) for each reading of LRN.
LRN_STYLES = {
    "paper": (5, 1e-4, 0.75, 2.0, False),  # §3.3
    "cuda-convnet": (5, 1e-4, 0.75, 2.0, True),  # authors' released configs
    "caffe": (5, 1e-4, 0.75, 1.0, True),  # bvlc_alexnet
}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
INITS = ("paper", "caffe", "kaiming")
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")  # §5: "initialized with the constant 1"


def _check(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"model.{name}={value!r} is not valid; allowed values: {list(allowed)}")


class AlexNet(nn.Module):
    """The paper's network; every keyword switches one ablation.

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
            raise ValueError(f"model.dropout={dropout!r} is not valid; allowed values: 0 <= dropout < 1")
        if num_classes < 1:
            raise ValueError(f"model.num_classes={num_classes!r} is not valid; it must be >= 1")
        self.towers, self.activation = towers, activation
        c1, c2, c3, c4, c5 = WIDTHS["two towers" if towers == 2 else "one tower"]
        g = 2 if towers == 2 and grouped else 1
        act = ACTIVATIONS[activation]
        pool = (3, 2) if overlap else (2, 2)

        def norm() -> nn.Module:
            # Each tower normalizes its own maps (LocalResponseNorm's groups).
            return LocalResponseNorm(*LRN_STYLES[lrn_style], groups=g) if lrn else nn.Identity()

        self.conv1 = nn.Conv2d(3, c1, 11, stride=4)  # input shared by both towers
        self.act1, self.norm1, self.pool1 = act(), norm(), nn.MaxPool2d(*pool)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=g)
        self.act2, self.norm2, self.pool2 = act(), norm(), nn.MaxPool2d(*pool)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)  # towers connect
        self.act3 = act()
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=g)
        self.act4 = act()
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=g)
        self.act5, self.pool5 = act(), nn.MaxPool2d(*pool)
        self.fc6 = nn.Linear(c5 * 6 * 6, 4096)  # towers connect in every fc layer
        self.act6, self.drop6 = act(), nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.act7, self.drop7 = act(), nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        self.reset_parameters(init)

    def features(self, x: Tensor) -> Tensor:
        """conv1..pool5: a (N, 3, 227, 227) image batch to (N, 256, 6, 6) maps."""
        x = self.pool1(self.norm1(self.act1(self.conv1(x))))
        x = self.pool2(self.norm2(self.act2(self.conv2(x))))
        x = self.act5(self.conv5(self.act4(self.conv4(self.act3(self.conv3(x))))))
        return self.pool5(x)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.features(x), 1)
        x = self.drop6(self.act6(self.fc6(x)))
        x = self.drop7(self.act7(self.fc7(x)))
        return self.fc8(x)

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
