"""The network of §3: AlexNet, its local response normalization, and the LRN's fused kernels (``kernels/``)."""

from alexnet.model.alexnet import AlexNet, count_parameters
from alexnet.model.lrn import LocalResponseNorm

__all__ = ["AlexNet", "LocalResponseNorm", "count_parameters"]
