"""The project's Hydra plugin (Hydra loads launchers only from the ``hydra_plugins`` namespace)."""
