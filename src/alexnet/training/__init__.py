"""Training: the LightningModule and its metrics, the callbacks, the loggers, the Hydra glue and the launch checks."""
