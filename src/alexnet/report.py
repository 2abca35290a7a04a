"""Results as people read them: a run's test table and worst classes, and a sweep's report beside the paper's claims.

A sweep's report is written into its folder when a multirun ends (the Hydra callback in
``conf/hydra/default.yaml``), or on demand::

    python -m alexnet.report logs/train/multiruns/<date>_<time>

``report.md``, ``report.html`` (self-contained: its figures are embedded, it opens offline) and
``report.json`` (the table as data, for the W&B dashboard). The statistics are :mod:`alexnet.sweep`'s:
per row, mean ± std over seeds with a 95% interval; Δ against the baseline with its interval; the
paper's claim beside it, marked as agreeing in sign or not, and beyond noise when the interval
excludes 0. The plots go to ``<sweep>/figures/``; the checkpoints' figures (``python -m alexnet.figures``)
are embedded too once drawn.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback

from alexnet.sweep import BASELINES, Estimate, Sweep, agreement, summarize, sweep_config
from alexnet.tracking import DEFAULT_PROJECT

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)


def format_results(results: dict[str, float]) -> str:
    """The final table: top-1/top-5 error for the centre crop and the ten patches."""
    lines = [f"{'':14}{'top-1 error':>12}{'top-5 error':>13}"]
    for label, key in (("centre crop", "centre_crop"), ("10 patches", "ten_crop")):
        top1, top5 = results.get(f"test/{key}_top1_error"), results.get(f"test/{key}_top5_error")
        if top1 is not None:
            lines.append(f"{label:14}{top1:>11.2%}{top5:>13.2%}")
    return "\n".join(lines)


def format_worst_classes(errors: Tensor, names: list[str], count: int = 5) -> str:
    """The classes with the highest ten-patch top-1 error (none listed if all are right), named in words."""
    order = errors.nan_to_num(-1.0).argsort(descending=True)[:count].tolist()
    worst = ", ".join(f"{names[i]} {errors[i]:.1%}" for i in order if errors[i] > 0)
    return f"worst classes (10 patches, top-1 error): {worst or 'none, every image right'}"


def format_test_report(results: dict[str, float], class_errors: Tensor, class_names: list[str]) -> str:
    """The error table of a test run and its worst classes (printed by train.py and eval.py)."""
    return f"{format_results(results)}\n{format_worst_classes(class_errors, class_names)}"


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
        if row.experiment in BASELINES:
            cells = ["reference", "", "", "", ""]
        else:
            paired = "-" if top1 is None else ("yes" if top1.paired else "no (Welch)" if top1.n > 1 else "one seed")
            paper = claim.delta() if claim and claim.sign else "-"
            cells = [_delta_cell(top1), _delta_cell(top5), paired, paper, agreement(top1, claim)]
        rows.append([row.label, *cells, claim.text if claim else ""])
    return header, rows


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
    problems = [f"`{job.folder.name}`: {reason}" for job, reason in sweep.failed]
    problems += ["`" + ",".join(f"{k}={v}" for k, v in point.items()) + "`: never started" for point in sweep.missing]
    if problems and sweep.grid:
        problems.append(
            f"Run the sweep again with `hydra.sweep.dir={sweep.folder}` (same overrides): finished jobs are "
            "skipped, interrupted ones resume."
        )
    elif problems:  # Optuna: a second run adds new trials; it does not redo these
        problems.append("These trials have no result; a search run again into the folder adds new trials.")
    return {"notes": notes, "deltas": deltas, "problems": problems}


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
            "reference" if row.experiment in BASELINES else agreement(top1, claim),
        ])  # fmt: skip
    swept = sorted({key for row in sweep.rows for job in row.jobs for key in job.swept})
    config = sweep_config(sweep.folder)
    return {
        "sweep": sweep.folder.name,
        "project": ((config.get("logger") or {}).get("wandb") or {}).get("project", DEFAULT_PROJECT),
        "swept_keys": swept,
        "columns": columns,
        "rows": rows,
        "figures": [os.path.relpath(f.path, sweep.folder) for f in figures],
        "failed": [{"job": job.folder.name, "reason": reason} for job, reason in sweep.failed],
        "missing": sweep.missing,
    }


def report_figures(sweep: Sweep) -> list[Figure]:
    """Draw the sweep's own figures (from its logs: cheap) and list them with those already drawn per job.

    A figure that cannot be drawn is left out with a warning: the tables are worth writing without it.
    """
    from alexnet import figures as draw

    out = sweep.folder / "figures"
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
    for row in sweep.rows:  # drawn by python -m alexnet.figures for the best seed of each experiment
        best = row.best_job()
        for name, what in draw.JOB_FIGURES.items():
            if best is not None and (best.folder / "figures" / name).is_file():
                made.append(Figure(best.folder / "figures" / name, f"{row.label} (its best seed, {best.seed}): {what}"))
    return made


def write_report(sweep_dir: str | Path) -> Path | None:
    """Write ``report.md``, ``report.html`` and ``report.json`` into the sweep folder; None if it has no jobs."""
    sweep = summarize(sweep_dir)
    if not sweep.rows:
        return None
    figures = report_figures(sweep)
    folder = sweep.folder
    _write(folder / "report.json", json.dumps(report_data(sweep, figures), indent=2, ensure_ascii=False) + "\n")
    _write(folder / "report.html", render_html(sweep, figures))
    _write(folder / "report.md", render(sweep, figures))
    return folder / "report.md"


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


class SweepReport(Callback):
    """Hydra callback: the report of a multirun, written when its last job ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            path = write_report(config.hydra.sweep.dir)
        except Exception as error:  # the jobs' results are on disk: python -m alexnet.report can try again
            log.warning("The sweep report could not be written (%s): python -m alexnet.report %s", error,
                        config.hydra.sweep.dir)  # fmt: skip
            return
        if path is None:
            return
        print(f"Sweep report: {path} (and report.html)")
        from alexnet.dashboard import log_report_run  # an online sweep: its table and figures in a W&B run too

        log_report_run(path.parent, json.loads(path.with_suffix(".json").read_text()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a folder under logs/train/multiruns")
    sweep_dir = parser.parse_args(argv).sweep_dir
    if not sweep_dir.is_dir():
        parser.exit(2, f"error: {sweep_dir} is not a folder: pass a sweep's folder under logs/train/multiruns\n")
    path = write_report(sweep_dir)
    if path is None:
        parser.exit(2, f"error: {sweep_dir} holds no jobs (<job>/.hydra/overrides.yaml): is it a sweep's folder?\n")
    print(path.read_text())
    print(f"Also {path.with_suffix('.html')} (figures embedded) and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
