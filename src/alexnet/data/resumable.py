"""A training loader that resumes mid-epoch exactly: the same remaining batches, the same augmentation.

torchdata's ``StatefulDataLoader`` records how many batches training has taken and, after
each batch, the state its dataset reports from each worker; Lightning stores that in the
checkpoint and hands it back on resume. Three things make the continuation exact:

- :class:`EpochSampler`: the order of an epoch and the workers' seeds follow from (seed, epoch)
  alone, never from the global RNG, which belongs to dropout (the module's checkpoint restores it).
  A fresh loader at an epoch boundary and a restored one mid-epoch both continue as an unbroken run.
- :class:`WorkerRandomState`: each worker's torch, numpy and Python RNG states, so a restored worker
  draws the crops, flips and lighting the unbroken run drew (the loader itself only reseeds it).
- No step checkpoint on an epoch's last batch (:class:`alexnet.training.callbacks.StepCheckpoint`): its loader
  state would say "all batches taken", and the resumed epoch would end before its validation.

Measured with a kill mid-epoch (tests/training/test_failures.py): the final weights equal an unbroken run's.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

from alexnet.errors import ConfigError


class EpochSampler(StatefulDistributedSampler):
    """This replica's share of an epoch's shuffled order, and the loader's generator, both seeded by (seed, epoch).

    A ``DistributedSampler`` (one replica on one device), so Lightning neither replaces it nor
    rebuilds the loader under DDP; ``rank`` is the data-parallel replica, so that both towers of
    a pair read the same images. Give the loader ``generator=sampler.generator``: the workers'
    base seed is drawn from it.
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.generator.manual_seed((self.seed * 1_000_003 + epoch) % 2**63)


class WorkerRandomState(Dataset):
    """A data set whose workers report their RNG states to ``StatefulDataLoader`` after each batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def state_dict(self) -> dict[str, Any]:
        if get_worker_info() is None:  # no workers: the main process's RNG is the module's to keep
            return {}
        return host_rng_states()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            set_host_rng_states(state)


class ReplicaBatches:
    """A data module's batch per process: ``batch_size`` is the global batch, split over the data-parallel replicas.

    Mixed into the data modules, which set ``batch_size`` and ``batch_size_per_device``; Lightning sets ``trainer``.
    """

    batch_size: int
    batch_size_per_device: bool
    trainer: Any

    def _replicas(self) -> tuple[int, int]:
        """(count, index) of the data-parallel replicas this process belongs to; (1, 0) on one device."""
        strategy = self.trainer.strategy if self.trainer is not None else None
        kwargs = getattr(strategy, "distributed_sampler_kwargs", None) or {}
        return kwargs.get("num_replicas", 1), kwargs.get("rank", 0)

    @property
    def device_batch_size(self) -> int:
        """Images per step on this process: the global batch's share, or ``batch_size`` per device."""
        replicas, _ = self._replicas()
        if self.batch_size_per_device or replicas == 1:
            return self.batch_size
        if self.batch_size % replicas:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is the global batch and does not split evenly over {replicas} "
                f"data-parallel replicas; use a multiple of {replicas}, or data.batch_size_per_device=true"
            )
        return self.batch_size // replicas


def host_rng_states() -> dict[str, Any]:
    """This process's torch, numpy and Python RNG states, as tensors and plain values (``weights_only`` loads them)."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": [
            torch.from_numpy(v.astype(np.int64)) if isinstance(v, np.ndarray) else v for v in np.random.get_state()
        ],
        "python": random.getstate(),
    }


def set_host_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`host_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
