"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012), faithful to the paper, on Lightning and Hydra.

The layers, each a folder, lower ones never importing higher ones (``tests/test_structure.py``):

- ``model/``: the network, its LRN and the LRN's kernels (torch only);
- ``data/``: data sets, data modules, statistics and preparation;
- ``parallel/``: the two-tower model parallelism and the bytes each strategy moves;
- ``training/``: the LightningModule, its metrics, callbacks, loggers and the Hydra glue;
- ``results/``: what people read: a sweep's statistics, its report, the figures, the dashboards.

Beside them, the contracts they share, one module each: ``errors`` (one-line user errors),
``metric_names`` (every logged key), ``run_folder`` (the files of a run's folder), ``checkpoint``
(what a checkpoint holds) and ``tracking`` (the W&B session); and the tasks ``train``,
``evaluate`` and ``predict``, which the scripts at the repository's root run.
"""

from alexnet.model import AlexNet, LocalResponseNorm, count_parameters

__all__ = ["AlexNet", "LocalResponseNorm", "count_parameters"]
