"""Training on several devices: the paper's two-tower model parallelism, and the bytes each strategy moves."""

from alexnet.parallel.collectives import gather_logits, gather_towers
from alexnet.parallel.towers import AlexNetTower, TowersStrategy, gather_points, sync_replica_gradients

__all__ = [
    "AlexNetTower",
    "TowersStrategy",
    "gather_logits",
    "gather_points",
    "gather_towers",
    "sync_replica_gradients",
]
