"""The SLURM launcher of a sweep (``hydra/launcher=slurm``): hydra-submitit-launcher's, whose jobs know the resolvers.

Its own module, so that a plain ``python train.py`` does not need submitit.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

from alexnet.training.config import register_resolvers


class SlurmLauncher(SubmititSlurmLauncher):
    """One SLURM job per sweep point, as hydra-submitit-launcher's ``submitit_slurm``.

    A job runs in a fresh Python on the cluster that unpickles the sweep's job and resolves its
    folder (``${job_folder:...}``) and log file (``${rank_suffix:}``) before any of the project's
    code runs: this registers the resolvers first.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        register_resolvers()
        return super().__call__(*args, **kwargs)
