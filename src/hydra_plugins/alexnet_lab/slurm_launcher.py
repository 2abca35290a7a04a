"""The SLURM launcher of a sweep (``hydra/launcher=slurm``): hydra-submitit-launcher's, whose jobs know the resolvers.

A Hydra plugin, because Hydra builds launchers only from the ``hydra_plugins`` namespace. Hydra imports
this module in every process it starts in (to find plugins), so it defines its class and does nothing
else; without hydra-submitit-launcher installed it defines none.
"""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher  # the module: Hydra scans this one's classes
except ImportError:  # no SLURM sweeps where submitit is not installed
    submitit_launcher = None

if submitit_launcher is not None:

    class SlurmLauncher(submitit_launcher.SlurmLauncher):
        """One SLURM job per sweep point, as hydra-submitit-launcher's ``submitit_slurm``.

        A job runs in a fresh Python on the cluster that unpickles the sweep's job and resolves its
        folder (``${job_folder:...}``) and log file (``${rank_suffix:}``) before any of the project's
        code runs: this registers the resolvers first.
        """

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            from alexnet.training.config import register_resolvers

            register_resolvers()
            return super().__call__(*args, **kwargs)
