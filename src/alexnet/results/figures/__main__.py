"""python -m alexnet.results.figures <run dir | sweep dir>: the paper's Figures 1, 3 and 4, logged to W&B, the report redrawn.

    python -m alexnet.results.figures logs/train/runs/<time>
    python -m alexnet.results.figures logs/train/multiruns/<date>_<time> [--max-train-images N] [--data-root DIR]

Figures 3 and 4 come from a run's best checkpoint, into ``<run>/figures/``; for a sweep, from the best
seed of each experiment, into that job's ``figures/``, and the sweep's report is written again with them
embedded (and Figure 1, for ``experiment=cifar_fig1`` or a sweep with ``baseline`` and ``ablate_relu``). Each job's figures are
logged to its W&B run, online or offline, under ``figures/``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from alexnet import run_folder
from alexnet.errors import DataError, command, one_line, user_error
from alexnet.results.figures import job_figures
from alexnet.results.report import log_report_run, write_report
from alexnet.results.sweep import read_job, read_jobs, summarize
from alexnet.tracking import log_images

log = logging.getLogger("alexnet.results.figures")


def draw(
    folder: str | Path, data_root: str | None = None, max_train_images: int | None = 10_000, num_workers: int = 0
) -> list[Path]:
    """All figures of a run's folder or a sweep's (and, for a sweep, its report again); the files written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: pass a run's folder (logs/train/runs/...) or a sweep's")
    if run_folder.is_run(folder):  # a run (or one job of a sweep)
        made = job_figures(read_job(folder), data_root, max_train_images, num_workers)
        log_images(folder, made)
        return made
    if not run_folder.is_sweep(folder) or not read_jobs(folder):
        raise DataError(f"{folder} is neither a run's folder (.hydra/) nor a sweep's (multirun.yaml): pass one of them")
    made = []
    for row in summarize(folder).rows:
        best = row.best_job()
        if best is None:
            log.warning("%s: no finished seed to draw Figures 3 and 4 from", row.label)
            continue
        try:
            drawn = job_figures(best, data_root, max_train_images, num_workers)
        except Exception as error:  # a user error: this experiment's figures; the others' and the report go on
            if (found := user_error(error)) is None:
                raise
            log.warning("%s: Figures 3 and 4 not drawn: %s", row.label, one_line(found))
            continue
        log_images(best.folder, drawn)
        made += drawn
    report = write_report(folder)  # Figure 1 and the sweep's plots, and every figure embedded in the report
    log_report_run(folder, json.loads(report.with_suffix(".json").read_text()))  # an online sweep's report run
    log.info("Report with the figures: %s", report.with_suffix(".html"))
    return made + sorted((folder / run_folder.FIGURES).glob("*.png"))


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet.results.figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folder", type=Path, help="a run's folder (logs/train/runs/...) or a sweep's (.../multiruns/...)"
    )
    parser.add_argument("--data-root", help="where the run's data is now, if it moved (default: where it trained)")
    parser.add_argument(
        "--max-train-images", type=int, default=10_000,
        help="Figure 4's neighbours are searched among this many training images, a fixed sample (0: all)",
    )  # fmt: skip
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers computing fc7 features")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    made = draw(args.folder, args.data_root, args.max_train_images or None, args.num_workers)
    print("\n".join(str(path) for path in made))


if __name__ == "__main__":
    main()
