"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012), faithful to the paper, on Lightning and Hydra."""

from alexnet.lrn import LocalResponseNorm
from alexnet.model import AlexNet, count_parameters

__all__ = ["AlexNet", "LocalResponseNorm", "count_parameters"]
