"""Training on several devices: the paper's two-tower model parallelism, and the bytes each strategy moves."""

from alexnet.parallel.collectives import CommLog, counting_allreduce_hook, gather_logits, gather_towers
from alexnet.parallel.towers import AlexNetTower, TowersStrategy, sync_replica_gradients

__all__ = [
    "AlexNetTower",
    "CommLog",
    "TowersStrategy",
    "counting_allreduce_hook",
    "gather_logits",
    "gather_towers",
    "sync_replica_gradients",
]
