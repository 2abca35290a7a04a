"""A sweep's report beside the paper's claims: on disk, and in a W&B run of the sweep's group.

It is written into its folder when a multirun ends (the Hydra callback in
``conf/hydra/default.yaml``), or on demand::

    python -m alexnet.results.report logs/train/multiruns/<date>_<time>

``report.md``, ``report.html`` (self-contained: its figures are embedded, it opens offline) and
``report.json`` (the table as data, for the W&B dashboard). The rows are :mod:`alexnet.results.sweep`'s, the
statistics :mod:`alexnet.results.statistics`' and the claims :mod:`alexnet.results.claims`': per row, mean ± std over seeds with a 95% interval; Δ against the baseline with its interval; the
paper's claim beside it, marked as agreeing in sign or not, and beyond noise when the interval
excludes 0. The plots go to ``<sweep>/figures/``; the checkpoints' figures (``python -m alexnet.results.figures``)
are embedded too once drawn. An online sweep's table and figures also go to its report run
(:func:`log_report_run`), which the dashboard (:mod:`alexnet.results.dashboard`) shows.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback

from alexnet import run_folder, tracking
from alexnet.errors import DataError, command, one_line
from alexnet.results.claims import agreement
from alexnet.results.statistics import Estimate, estimate
from alexnet.results.sweep import Sweep, summarize

if TYPE_CHECKING:  # the figures module imports torch and matplotlib: only where a report draws
    from alexnet.results.figures import Reached

log = logging.getLogger(__name__)


# Rendering ---------------------------------------------------------------------------------------------


def _cell(value: Estimate | None) -> str:
    """An error in %: mean ± std [the interval, within the 0-100 an error can take]."""
    if value is None:
        return "-"
    if value.std is None:
        return f"{value.mean:.2f}"
    return f"{value.mean:.2f} ± {value.std:.2f} [{max(value.low, 0.0):.2f}, {min(value.high, 100.0):.2f}]"


def _delta_cell(value: Estimate | None) -> str:
    return "-" if value is None else f"{value.mean:+.2f} {value.interval()}"


def error_table(sweep: Sweep) -> tuple[list[str], list[list[str]]]:
    header = ["job", "seeds", *sweep.metrics]
    rows = [[row.label, str(len(row.finished)), *(_cell(row.errors[c]) for c in sweep.metrics)] for row in sweep.rows]
    return header, rows


def delta_table(sweep: Sweep) -> tuple[list[str], list[list[str]]]:
    header = ["job", "Δ top-1 [95% CI]", "Δ top-5 [95% CI]", "seeds paired", "paper's Δ", "agreement (top-1)", "claim"]
    rows = []
    for row in sweep.rows:
        top1, top5 = row.deltas.get("top-1 error"), row.deltas.get("top-5 error")
        claim = row.claim
        if row.is_reference:
            cells = ["reference", "", "", "", ""]
        else:
            paired = "-" if top1 is None else ("yes" if top1.paired else "no (Welch)" if top1.n > 1 else "one seed")
            paper = claim.delta() if claim and claim.sign else "-"
            cells = [_delta_cell(top1), _delta_cell(top5), paired, paper, agreement(top1, claim)]
        rows.append([row.label, *cells, claim.text if claim else ""])
    return header, rows


def _reached_cell(values: list[float | None], unit: str, scale: float = 1.0) -> str:
    """When the seeds reached 25%: mean ± std, and how many never did."""
    found = estimate([v / scale for v in values if v is not None])
    never = sum(v is None for v in values)
    cell = "-" if found is None else f"{found.mean:.1f}" + (f" ± {found.std:.1f}" if found.std is not None else "")
    cell += f" {unit}" if found is not None else ""
    return cell + (f" (not reached by {never} seed{'s' if never > 1 else ''})" if never else "")


def _short_of(reached: list[Reached]) -> str:
    """Where the seeds that never reached 25% ended: ``; 29.2% after 30 epochs``."""
    short = [r for r in reached if r.epochs is None]
    if not short:
        return ""
    errors = ", ".join(f"{100 * r.last_error:.1f}%" for r in short)
    return f"; {errors} after {min(r.trained_epochs for r in short):.0f} epochs"


def figure1_table(sweep: Sweep) -> tuple[list[str], list[list[str]]] | None:
    """Figure 1's claim measured (:func:`alexnet.results.figures.figure1_speedup`); None in other sweeps."""
    from alexnet.results import figures as draw

    measured = draw.figure1_speedup(sweep.rows)
    if measured is None:
        return None
    header = ["net", "seeds", "epochs to 25% training error", "training time to 25%", "the paper"]
    rows = []
    for name, reached in (("ReLU (solid)", measured.relu), ("tanh (dashed)", measured.tanh)):
        times = [r.seconds for r in reached] if all(r.trained_seconds for r in reached) else []
        rows.append([name, str(len(reached)), _reached_cell([r.epochs for r in reached], "epochs") + _short_of(reached),
                     _reached_cell(times, "min", 60.0) if times else "-", ""])  # fmt: skip
    bound = f"; more than {min(measured.bounds):.1f}x where tanh never got there" if measured.bounds else ""
    pairs = measured.epochs.n if measured.epochs else 0
    rows.append([
        "speed-up (tanh / ReLU)", f"{pairs} paired", draw.speedup_cell(measured.epochs) + bound,
        draw.speedup_cell(measured.seconds), f"{draw.PAPER_SPEEDUP:.0f}x (§3.1)",
    ])  # fmt: skip
    if measured.search:  # the rows the search chose
        rows[0][0] += f": {measured.relu_row.label}"
        rows[1][0] += f": {measured.tanh_row.label}"
    return header, rows


def search_table(sweep: Sweep) -> tuple[list[str], list[list[str]]] | None:
    """Figure 1's learning-rate search: every candidate's epochs to 25%, the fastest of each activation chosen."""
    from alexnet.results import figures as draw

    measured = draw.figure1_speedup(sweep.rows)
    if measured is None or not measured.search:
        return None
    chosen = {measured.relu_row.label, measured.tanh_row.label}
    header = ["job", "seeds", "epochs to 25% training error", "chosen"]
    rows = [[row.label, str(len(reached)), _reached_cell([r.epochs for r in reached], "epochs") + _short_of(reached),
             "✓" if row.label in chosen else ""] for _, row, reached in measured.search]  # fmt: skip
    return header, rows


FIGURE1_NOTE = (
    "Figure 1 (§3.1): each job's epoch training error (top-1, counted during the epoch as cuda-convnet "
    "printed it), from chance before the first step; where it first falls to 25%, between two epoch ends "
    "linearly, in epochs and in minutes of training. The speed-up is tanh's over ReLU's seed by seed: their "
    "geometric mean [95% interval, t on the logarithms]."
)


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


def _paragraphs(sweep: Sweep) -> dict[str, list[str]]:
    notes = [
        "Errors in % on the validation set, 10 patches unless marked centre: mean ± std over seeds "
        "[95% confidence interval of the mean, Student's t, cut to 0-100].",
    ]
    if not sweep.tested:
        notes.append("No job was tested (`test=false`): the errors are each job's best validation top-1 error.")
    deltas = [
        "Δ: the row's error minus the baseline's, in percentage points; positive means the ablated part "
        "helped. Paired seed by seed when both rows ran the same seeds, else Welch's interval. "
        "Agreement: Δ has the sign the paper's claim implies; beyond noise when its interval excludes 0."
    ]
    if not sweep.has_baseline:
        deltas = ["No baseline in this sweep: add `experiment=baseline` to it to see Δ against the paper's claims."]
    if not sweep.has_baseline and figure1_table(sweep) is not None:
        deltas = ["Figure 1's sweep: ReLU against tanh is measured below, in training time to 25% error."]
    problems = [f"`{job.folder.name}`: {reason}" for job, reason in sweep.failed]
    problems += ["`" + ",".join(f"{k}={v}" for k, v in point.items()) + "`: never started" for point in sweep.missing]
    if problems and sweep.grid:
        problems.append(
            f"Run the sweep again with `hydra.sweep.dir={sweep.folder}` (same overrides): finished jobs are "
            "skipped, interrupted ones resume."
        )
    elif problems:  # Optuna: a second run adds new trials; it does not redo these
        problems.append("These trials have no result; a search run again into the folder adds new trials.")
    return {"notes": notes, "deltas": deltas, "problems": problems, "figure1": [FIGURE1_NOTE]}


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines; "|" inside a cell escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def render(sweep: Sweep, figures: list[Figure] = ()) -> str:
    """The markdown report; figures are linked relative to the sweep folder."""
    text = _paragraphs(sweep)
    lines = [f"# Sweep {sweep.folder.name}", "", *text["notes"], "", *markdown_table(*error_table(sweep))]
    lines += ["", "## Against the baseline and the paper", "", *text["deltas"], ""]
    if sweep.has_baseline:
        lines += [*markdown_table(*delta_table(sweep)), ""]
    if (figure1 := figure1_table(sweep)) is not None:
        lines += ["## Figure 1: ReLU against tanh", "", *text["figure1"], "", *markdown_table(*figure1), ""]
    if (search := search_table(sweep)) is not None:
        lines += ["Each activation's learning rate, the fastest to 25% of those swept:", "", *markdown_table(*search)]
        lines.append("")
    if text["problems"]:
        lines += ["## Failed or missing jobs", "", *(f"- {p}" for p in text["problems"][:-1]), "", text["problems"][-1]]
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for figure in figures:
            lines += [
                f"![{figure.caption}](<{os.path.relpath(figure.path, sweep.folder)}>)",
                "",
                f"*{figure.caption}*",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(text: str) -> str:
    """Markdown's `code` spans as HTML, the rest escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;"
    "text-align:left}th{background:#f3f3f3}figure{margin:1.5rem 0}img{max-width:100%}figcaption{color:#555}"
)


def render_html(sweep: Sweep, figures: list[Figure] = ()) -> str:
    """The same report as one HTML file that opens offline: each figure is embedded as a data: URI."""
    text = _paragraphs(sweep)
    title = f"Sweep {sweep.folder.name}"
    parts = [f"<h1>{html.escape(title)}</h1>", *(f"<p>{_code(p)}</p>" for p in text["notes"])]
    parts += [_html_table(*error_table(sweep)), "<h2>Against the baseline and the paper</h2>"]
    parts += [f"<p>{_code(p)}</p>" for p in text["deltas"]]
    if sweep.has_baseline:
        parts.append(_html_table(*delta_table(sweep)))
    if (figure1 := figure1_table(sweep)) is not None:
        parts += ["<h2>Figure 1: ReLU against tanh</h2>", *(f"<p>{_code(p)}</p>" for p in text["figure1"])]
        parts.append(_html_table(*figure1))
    if (search := search_table(sweep)) is not None:
        parts += ["<p>Each activation's learning rate, the fastest to 25% of those swept:</p>", _html_table(*search)]
    if text["problems"]:
        items = "".join(f"<li>{_code(p)}</li>" for p in text["problems"][:-1])
        parts += ["<h2>Failed or missing jobs</h2>", f"<ul>{items}</ul>", f"<p>{_code(text['problems'][-1])}</p>"]
    if figures:
        parts.append("<h2>Figures</h2>")
    for figure in figures:
        data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
        caption = html.escape(figure.caption)
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
        )
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _number(value: Estimate | None) -> float | None:
    return None if value is None else round(value.mean, 4)


def report_data(sweep: Sweep, figures: list[Figure] = ()) -> dict[str, Any]:
    """The report's table as data (``report.json``): what the W&B dashboard and its ``wandb.Table`` show."""
    columns = ["experiment", "job", "seeds", *sweep.metrics, "Δ top-1", "Δ top-1 95% CI", "Δ top-5", "paper's Δ top-1"]
    columns.append("agreement")
    rows = []
    for row in sweep.rows:
        top1, top5 = row.deltas.get("top-1 error"), row.deltas.get("top-5 error")
        claim = row.claim
        rows.append([
            row.experiment, row.label, len(row.finished), *(_number(row.errors[c]) for c in sweep.metrics),
            _number(top1), None if top1 is None or top1.low is None else top1.interval(), _number(top5),
            claim.top1 if claim else None,
            "reference" if row.is_reference else agreement(top1, claim),
        ])  # fmt: skip
    swept = sorted({key for row in sweep.rows for job in row.jobs for key in job.swept})
    return {
        "sweep": sweep.folder.name,
        "project": tracking.project_of(sweep.folder)[0],
        "swept_keys": swept,
        "columns": columns,
        "rows": rows,
        "figures": [os.path.relpath(f.path, sweep.folder) for f in figures],
        "figure1": _figure1_data(sweep),
        "failed": [{"job": job.folder.name, "reason": reason} for job, reason in sweep.failed],
        "missing": sweep.missing,
    }


def _figure1_data(sweep: Sweep) -> dict[str, Any] | None:
    """Figure 1's measurement as data: each job's crossing, and the speed-ups with their intervals."""
    from alexnet.results import figures as draw

    measured = draw.figure1_speedup(sweep.rows)
    if measured is None:
        return None

    def interval(value: Any) -> dict[str, Any] | None:
        return None if value is None else {"mean": value.mean, "low": value.low, "high": value.high, "seeds": value.n}

    return {
        "target_train_error": draw.TARGET_ERROR, "paper_speedup": draw.PAPER_SPEEDUP,
        "relu": [vars(r) for r in measured.relu], "tanh": [vars(r) for r in measured.tanh],
        "speedup_epochs": interval(measured.epochs), "speedup_seconds": interval(measured.seconds),
        "speedup_lower_bounds": measured.bounds, "relu_job": measured.relu_row.label,
        "tanh_job": measured.tanh_row.label,
        "search": [{"job": row.label, "reached": [vars(r) for r in reached]} for _, row, reached in measured.search],
    }  # fmt: skip


def report_figures(sweep: Sweep) -> list[Figure]:
    """Draw the sweep's own figures (from its logs: cheap) and list them with those already drawn per job.

    A figure that cannot be drawn is left out with a warning: the tables are worth writing without it.
    """
    from alexnet.results import figures as draw

    out = sweep.folder / run_folder.FIGURES
    plots = [
        ("val_top1_per_epoch.png", draw.val_error_per_epoch,
         "Validation top-1 error per epoch: mean over seeds, band from the lowest to the highest seed"),
        ("deltas.png", draw.deltas, "Δ top-1 error against the baseline with its 95% interval; ◆ the paper's claimed Δ"),
        ("fig1_relu_vs_tanh.png", draw.relu_vs_tanh, "Figure 1: training error of ReLU (solid) and tanh (dashed)."),
    ]  # fmt: skip
    made = []
    for name, plot, caption in plots:
        try:
            drawn = plot(sweep.rows, out / name)  # None: nothing to draw in this sweep
        except Exception as error:
            log.warning("%s could not be drawn (%s)", name, error)
            continue
        if drawn is not None:
            made.append(Figure(out / name, f"{caption} {drawn}" if isinstance(drawn, str) else caption))
    for row in sweep.rows:  # drawn by python -m alexnet.results.figures for the best seed of each experiment
        best = row.best_job()
        for name, what in draw.JOB_FIGURES.items():
            if best is not None and (best.folder / run_folder.FIGURES / name).is_file():
                made.append(
                    Figure(best.folder / run_folder.FIGURES / name, f"{row.label} (its best seed, {best.seed}): {what}")
                )
    return made


def write_report(sweep_dir: str | Path) -> Path | None:
    """Write ``report.md``, ``report.html`` and ``report.json`` into the sweep folder; None if it has no jobs."""
    sweep = summarize(sweep_dir)
    if not sweep.rows:
        return None
    figures = report_figures(sweep)
    folder = sweep.folder
    data = json.dumps(report_data(sweep, figures), indent=2, ensure_ascii=False) + "\n"
    run_folder.atomic_write(folder / run_folder.REPORT_JSON, data)
    run_folder.atomic_write(folder / run_folder.REPORT_HTML, render_html(sweep, figures))
    return run_folder.atomic_write(folder / run_folder.REPORT, render(sweep, figures))


class SweepReport(Callback):
    """Hydra callback: the report of a multirun, written when its last job ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            path = write_report(config.hydra.sweep.dir)
        except Exception as error:  # the jobs' results are on disk: python -m alexnet.results.report can try again
            log.warning("The sweep report could not be written (%s): python -m alexnet.results.report %s", error,
                        config.hydra.sweep.dir)  # fmt: skip
            return
        if path is None:
            return
        print(f"Sweep report: {path} (and {run_folder.REPORT_HTML})")
        log_report_run(path.parent, json.loads(path.with_suffix(".json").read_text()))  # an online sweep's W&B run


TABLE_KEY = "sweep/report_table"  # the report run's wandb.Table
FIGURE_PREFIX = "sweep"  # the report run's figures: sweep/<name>, sweep/<job>/<name>


def figure_key(relative: str | Path) -> str:
    """The W&B key of a report figure: ``figures/deltas.png`` -> ``sweep/deltas``,
    ``<job>/figures/fig3_conv1.png`` -> ``sweep/<job>/fig3_conv1`` (each job draws the same names)."""
    parts = [part for part in Path(relative).with_suffix("").parts if part not in (run_folder.FIGURES, "..", ".")]
    return "/".join([FIGURE_PREFIX, *(re.sub(r"[^\w.=,+-]", "_", part) for part in parts)])


def logged_figures(sweep_dir: str | Path, report: dict[str, Any]) -> list[tuple[Path, str]]:
    """The report's figures that exist on disk, with their W&B keys."""
    folder = Path(sweep_dir)
    found = [(folder / name, figure_key(name)) for name in report.get("figures") or []]
    return [(path, key) for path, key in found if path.is_file()]


# The report run -------------------------------------------------------------------------------------------


def online_sweep(sweep_dir: str | Path) -> bool:
    """True if a job of the sweep logged to W&B online (``<job>/wandb/run-*``, not ``offline-run-*``)."""
    return any(path.is_dir() for path in Path(sweep_dir).glob(f"*/{run_folder.WANDB}/run-*"))


def report_run_id(group: str) -> str:
    """The W&B id of a sweep's report run: the same every time its report is logged."""
    return "report-" + re.sub(r"[^A-Za-z0-9_-]", "_", group)[:120]


def log_report_run(sweep_dir: str | Path, report: dict[str, Any], mode: str | None = None) -> str | None:
    """Log the sweep's table and figures to a W&B run of its group with job type "report"; its id, or None.

    ``mode`` None (the Hydra callback's call): only for an online sweep, as :func:`alexnet.tracking.start`
    decides (offline when the server does not answer, for ``wandb sync`` to upload); ``mode`` "online"
    (the dashboard's call): online or not at all, whatever the sweep was. The table is
    ``sweep/report_table`` (a ``wandb.Table``), each figure ``sweep/<name>`` or ``sweep/<job>/<name>``
    (:func:`figure_key`, a ``wandb.Image``): what the dashboard's report shows. Never raises: the
    report is on disk either way.
    """
    folder = Path(sweep_dir)
    if mode is None and not online_sweep(folder):
        return None
    try:
        import wandb

        table = wandb.Table(
            columns=[str(c) for c in report["columns"]],
            data=[list(row) for row in report["rows"]],
            allow_mixed_types=True,
        )
        data = {TABLE_KEY: table}
        data |= {
            key: wandb.Image(str(path), caption=str(path.relative_to(folder)))
            for path, key in logged_figures(folder, report)
        }
    except Exception as error:
        log.warning("The sweep's report run was not logged to W&B (%s)", one_line(error))
        return None
    options = tracking.options_of(folder)
    group = str(report.get("sweep") or folder.resolve().name)

    def begin(attempt: str) -> Any:
        return wandb.init(
            project=options.get("project") or report.get("project") or tracking.DEFAULT_PROJECT,
            entity=options.get("entity"),
            group=group,
            job_type=tracking.REPORT_JOB_TYPE,
            name=tracking.REPORT_JOB_TYPE,
            # One report run per sweep: logged again (python -m alexnet.results.figures), it is resumed and
            # shows the latest table and figures (offline, a later folder replaces an earlier one).
            id=report_run_id(group),
            resume="allow",
            tags=[tracking.REPORT_JOB_TYPE],
            config={"sweep": group, "swept_keys": report.get("swept_keys") or []},
            dir=str(folder),
            mode=attempt,
            settings=tracking.settings(options.get("init_timeout", 30), options.get("finish_timeout", 60), silent=True),
        )

    run = tracking.start(begin, mode or "auto", "the sweep's report run", fallback=mode is None)
    if run is None:
        return None
    try:
        run.log(data)
    except Exception as error:
        log.warning("The sweep's report run was not logged to W&B (%s)", one_line(error))
        tracking.finish(run, failed=True)
        return None
    tracking.finish(run)
    return run.id


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet.results.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep_dir", type=Path, help="a folder under logs/train/multiruns")
    sweep_dir = parser.parse_args(argv).sweep_dir
    if not sweep_dir.is_dir():
        raise DataError(f"{sweep_dir} is not a folder: pass a sweep's folder under logs/train/multiruns")
    path = write_report(sweep_dir)
    if path is None:
        raise DataError(f"{sweep_dir} holds no jobs (<job>/{run_folder.OVERRIDES}): is it a sweep's folder?")
    print(path.read_text())
    print(f"Also {path.with_suffix('.html')} (figures embedded) and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
