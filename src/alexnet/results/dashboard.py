"""W&B dashboards as code: a sweep's workspace and report, built from its folder.

A sweep's runs share a W&B group (the sweep folder's name), but the W&B UI starts every
workspace empty: each sweep's filter, grouping and panels would be set up by hand, and
differently each time. This builds them from the sweep folder instead::

    python -m alexnet.results.dashboard logs/train/multiruns/<date>_<time> [--entity E] [--project P] [--dry-run]

- a workspace view filtered to the sweep's group, its runs grouped by experiment (mean line,
  min-max band over seeds), with the sections Errors, Learning rate and throughput, Sweep
  (parallel coordinates over the swept keys, a run comparer of the differences) and Filters
  (conv1's kernels, one image per tower);
- a report with the sweep's table (``report.json``, from ``python -m alexnet.results.report``), its
  figures and the same curves. The table and figures reach W&B in a run of the sweep's group
  with ``job_type="report"`` (:func:`log_report_run`, at the end of an online sweep), which the
  report shows through panels, so no figure needs a URL.

``--dry-run`` prints both definitions as JSON, what W&B would receive, without the network
or credentials. Only saving them (and looking up the default entity) talks to W&B.

Where a swept key lives in the W&B config: the module logs the resolved Hydra config under
``config`` (``seed=1`` is ``config.seed``); a Hydra group choice (``experiment=baseline``,
``optimizer=sgd``) is not part of the resolved config and is read from a top-level key of
its name (``experiment``), which the run must log for the grouping to split the runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet import metric_names, run_folder, tracking
from alexnet.errors import ConfigError, DataError, command, one_line
from alexnet.results.report import TABLE_KEY, log_report_run, logged_figures, markdown_table
from alexnet.results.sweep import read_jobs

log = logging.getLogger(__name__)

ERROR_METRICS = (
    metric_names.VAL_TOP1_ERROR,
    metric_names.VAL_TOP5_ERROR,
    metric_names.TRAIN_TOP1_ERROR_EPOCH,
    metric_names.TRAIN_TOP5_ERROR_EPOCH,
)
LR_KEYS = tuple(f"{metric_names.LEARNING_RATE_PREFIX}{name}" for name in ("SGD", "Adam"))
LR_REGEX = f"^{metric_names.LEARNING_RATE_PREFIX}"  # and any other optimizer
FINAL_METRICS = (metric_names.VAL_TOP1_ERROR, metric_names.TEST_TOP1_ERROR)  # the parallel coordinates' last axes
SEED_KEY = "seed"
NEEDS_PACKAGE = 'python -m alexnet.results.dashboard needs the wandb-workspaces package: pip install -e ".[dashboard]"'
NO_CREDENTIALS = (
    "W&B has no credentials: run `wandb login` (or set WANDB_API_KEY), or use --dry-run to see the definitions"
)


class ServerError(Exception):
    """W&B did not answer or refused to save: reported in one line, exit status 1 (not the user's input)."""


# The sweep folder -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRuns:
    """What the dashboard needs from a sweep folder: where its W&B runs are and how to group them."""

    folder: Path
    group: str  # the W&B group of its runs: the folder's name
    project: str
    entity: str | None  # None: the W&B default entity, looked up when saving
    config_keys: dict[str, str]  # swept Hydra key -> its path in the runs' W&B config
    group_by: list[str]  # W&B config paths the runs are grouped by (all swept keys but the seed)
    jobs: int
    report: dict[str, Any]  # report.json
    figures: list[tuple[Path, str]]  # (PNG file, W&B key in the report run)


def config_groups(sweep_dir: str | Path) -> set[str]:
    """The Hydra config groups of the sweep (``experiment``, ``optimizer``, ...), whose choices are names, not values."""
    choices = ((run_folder.read_config(sweep_dir).get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return {key for key in choices if not key.startswith("hydra")} | {"experiment"}


def wandb_config_key(key: str, groups: set[str]) -> str:
    """Where a swept Hydra key is in a run's W&B config: ``seed`` -> ``config.seed``, ``experiment`` -> ``experiment``."""
    key = key.lstrip("+~")
    return key if key in groups else f"config.{key}"


def read_report(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep's ``report.json``; a user error if it is missing or not a report."""
    path = Path(sweep_dir) / run_folder.REPORT_JSON
    if not path.is_file():
        raise DataError(f"{path} does not exist: run `python -m alexnet.results.report {sweep_dir}` first")
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path} cannot be read ({one_line(error)}): run `python -m alexnet.results.report {sweep_dir}`"
        ) from error
    if not isinstance(report, dict) or not isinstance(report.get("columns"), list):
        raise DataError(f"{path} holds no table: run `python -m alexnet.results.report {sweep_dir}` again")
    return report


def read_sweep(sweep_dir: str | Path, entity: str | None = None, project: str | None = None) -> SweepRuns:
    """The sweep folder's group, project, swept keys, table and figures."""
    folder = Path(sweep_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: pass a sweep's folder under logs/train/multiruns")
    report = read_report(folder)
    project_default, entity_default = tracking.project_of(folder)
    jobs = read_jobs(folder)
    swept = list(report.get("swept_keys") or sorted({key for job in jobs for key in job.swept}))
    groups = config_groups(folder)
    config_keys = {key: wandb_config_key(key, groups) for key in swept}
    group_by = [path for key, path in config_keys.items() if key != SEED_KEY] or [
        wandb_config_key("experiment", groups)
    ]
    return SweepRuns(
        folder=folder,
        group=str(report.get("sweep") or folder.resolve().name),
        project=project or project_default,
        entity=entity or entity_default,
        config_keys=config_keys,
        group_by=group_by,
        jobs=len(jobs),
        report=report,
        figures=logged_figures(folder, report),
    )


# The definitions ------------------------------------------------------------------------------------------


def _workspaces() -> tuple[Any, Any]:
    """``wandb_workspaces.workspaces`` and ``reports.v2``: an optional extra."""
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as error:
        raise ConfigError(NEEDS_PACKAGE) from error
    return ws, wr


def _group_filter(sweep: SweepRuns, job_type: str | None = None) -> str:
    text = f"Metric('Group') == {sweep.group!r}"
    return text + (f" and Metric('JobType') == {job_type!r}" if job_type else "")


def _line(wr: Any, sweep: SweepRuns, y: list[str], x: str, title: str, **kwargs: Any) -> Any:
    """A line plot of the runs grouped as the sweep is: mean over seeds, band from the lowest to the highest."""
    group = wr.Config(sweep.group_by[0]) if len(sweep.group_by) == 1 else None  # else the runs table's grouping
    return wr.LinePlot(
        title=title,
        x=x,
        y=y,
        title_x=x,
        groupby=group,
        aggregate=True,
        groupby_aggfunc="mean",
        groupby_rangefunc="minmax",
        smoothing_type="none",
        layout=wr.Layout(w=12, h=8),
        **kwargs,
    )


def error_panels(wr: Any, sweep: SweepRuns) -> list[Any]:
    return [_line(wr, sweep, [metric], metric_names.EPOCH, metric) for metric in ERROR_METRICS]


def training_panels(wr: Any, sweep: SweepRuns) -> list[Any]:
    return [
        _line(wr, sweep, list(LR_KEYS), metric_names.STEP, "learning rate", metric_regex=LR_REGEX),
        _line(
            wr,
            sweep,
            [metric_names.TRAIN_SAMPLES_PER_SEC],
            metric_names.STEP,
            "training samples per second (device time)",
        ),
        _line(wr, sweep, [metric_names.TRAIN_LOSS], metric_names.STEP, metric_names.TRAIN_LOSS),
    ]


def sweep_panels(wr: Any, sweep: SweepRuns) -> list[Any]:
    """Parallel coordinates from the swept keys to the final errors, and the runs' differences."""
    columns = [
        wr.ParallelCoordinatesPlotColumn(metric=wr.Config(path), display_name=key)
        for key, path in sweep.config_keys.items()
    ]
    columns += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(m), display_name=m) for m in FINAL_METRICS]
    return [
        wr.ParallelCoordinatesPlot(title="swept keys -> final error", columns=columns, layout=wr.Layout(w=24, h=10)),
        wr.RunComparer(diff_only=True, layout=wr.Layout(w=24, h=12)),
    ]


def filter_panels(wr: Any) -> list[Any]:
    return [
        wr.MediaBrowser(
            title="conv1 kernels, one image per tower",
            media_keys=[metric_names.CONV1_IMAGES],
            layout=wr.Layout(w=24, h=12),
        )
    ]


def _column(path: str) -> str:
    """A runs table column of a config path: ``config.seed`` -> ``config:config.value.seed``."""
    first, _, rest = path.partition(".")
    return f"config:{first}.value" + (f".{rest}" if rest else "")


def build_workspace(sweep: SweepRuns, entity: str | None) -> Any:
    """The sweep's workspace view: its group, grouped by experiment, four sections of panels."""
    ws, wr = _workspaces()
    sections = [
        ("Errors", error_panels(wr, sweep), 2),
        ("Learning rate and throughput", training_panels(wr, sweep), 3),
        ("Sweep", sweep_panels(wr, sweep), 1),
        ("Filters", filter_panels(wr), 1),
    ]
    pinned = [_column(path) for path in sweep.config_keys.values()] + [f"summary:{m}" for m in FINAL_METRICS]
    return ws.Workspace(
        entity=entity or "",
        project=sweep.project,
        name=f"Sweep {sweep.group}",
        sections=[
            ws.Section(
                name=name, panels=panels, is_open=True, layout_settings=ws.SectionLayoutSettings(columns=columns)
            )
            for name, panels, columns in sections
        ],
        settings=ws.WorkspaceSettings(smoothing_type="none", max_runs=max(10, sweep.jobs + 1)),
        runset_settings=ws.RunsetSettings(
            filters=_group_filter(sweep, tracking.TRAIN_JOB_TYPE),
            groupby=[ws.Config(path) for path in sweep.group_by],
            pinned_columns=pinned,
        ),
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("\n", " ")


def report_table(report: dict[str, Any]) -> str:
    """``report.json``'s table in markdown; empty cells as "-", numbers to two decimals."""
    rows = [[_cell(c) for c in row] for row in report.get("rows") or []]
    return "\n".join(markdown_table([_cell(c) for c in report.get("columns") or []], rows))


def _problems(report: dict[str, Any]) -> list[str]:
    problems = [f"`{item.get('job')}`: {item.get('reason')}" for item in report.get("failed") or []]
    for point in report.get("missing") or []:
        name = ",".join(f"{k}={v}" for k, v in point.items()) if isinstance(point, dict) else str(point)
        problems.append(f"`{name}`: never started")
    return problems


def build_report(sweep: SweepRuns, entity: str | None) -> Any:
    """The sweep's report: its table, its figures, its curves and the swept keys against the error.

    The run sets name no project (the report's own); :func:`publish` points them at it before saving,
    which looks the project up on the server.
    """
    _, wr = _workspaces()

    def runs() -> Any:  # each grid its own run set
        return wr.Runset(
            name=f"Sweep {sweep.group}",
            filters=_group_filter(sweep, tracking.TRAIN_JOB_TYPE),
            groupby=[f"config.{path}" for path in sweep.group_by],
        )

    def report_run() -> Any:
        return wr.Runset(name="Sweep report run", filters=_group_filter(sweep, tracking.REPORT_JOB_TYPE))

    report = sweep.report
    swept = ", ".join(f"`{key}`" for key in sweep.config_keys) or "nothing"
    intro = (
        f"The runs of the Hydra multirun `{sweep.folder.name}` (W&B group `{sweep.group}`, {sweep.jobs} jobs), "
        f"swept over {swept}. Curves: mean over the seeds of each "
        f"{' / '.join(f'`{path}`' for path in sweep.group_by)}, band from the lowest to the highest seed.\n\n"
        f"The table is the sweep's `report.md` (`python -m alexnet.results.report`). The sortable table and the figures "
        f"below come from the sweep's run with job type `{tracking.REPORT_JOB_TYPE}`, logged when an online sweep ends "
        "(or by `python -m alexnet.results.dashboard`)."
    )
    blocks: list[Any] = [wr.MarkdownBlock(text=intro), wr.H2(text="Results")]
    blocks.append(wr.MarkdownBlock(text=report_table(report)))
    blocks.append(
        wr.PanelGrid(
            runsets=[report_run()],
            panels=[wr.WeavePanelSummaryTable(table_name=TABLE_KEY, layout=wr.Layout(w=24, h=10))],
        )
    )
    if sweep.figures:
        figures = [
            wr.MediaBrowser(title=str(path.relative_to(sweep.folder)), media_keys=[key], layout=wr.Layout(w=12, h=10))
            for path, key in sweep.figures
        ]
        blocks += [wr.H2(text="Figures"), wr.PanelGrid(runsets=[report_run()], panels=figures)]
    blocks += [wr.H2(text="Errors per epoch"), wr.PanelGrid(runsets=[runs()], panels=error_panels(wr, sweep))]
    blocks += [
        wr.H2(text="Learning rate and throughput"),
        wr.PanelGrid(runsets=[runs()], panels=training_panels(wr, sweep)),
    ]
    blocks += [wr.H2(text="The swept keys"), wr.PanelGrid(runsets=[runs()], panels=sweep_panels(wr, sweep))]
    blocks += [wr.H2(text="conv1 filters"), wr.PanelGrid(runsets=[runs()], panels=filter_panels(wr))]
    problems = _problems(report)
    if problems:
        blocks += [wr.H2(text="Failed or missing jobs"), wr.MarkdownBlock(text="\n".join(f"- {p}" for p in problems))]
    return wr.Report(
        entity=entity or "",
        project=sweep.project,
        title=f"Sweep {sweep.group}"[:128],
        description=f"{len(report.get('rows') or [])} rows, swept over {', '.join(sweep.config_keys) or 'nothing'}",
        blocks=blocks,
        width="fluid",
    )


def definitions(sweep: SweepRuns) -> dict[str, Any]:
    """The workspace and report as W&B would receive them (their specs), built without the network.

    wandb-workspaces has no public way to see a definition without saving it: ``_to_model()`` is what
    ``save()`` sends (tests/results/test_dashboard.py fails if it moves).
    """
    workspace = build_workspace(sweep, sweep.entity)._to_model()
    report = build_report(sweep, sweep.entity)._to_model()
    workspace = workspace.model_dump(mode="json", by_alias=True, exclude_none=True)
    report = report.model_dump(mode="json", by_alias=True, exclude_none=True)
    if sweep.entity is None:  # W&B's default entity, known once logged in
        workspace["entity"] = report["project"]["entityName"] = None
    return {
        "entity": sweep.entity,
        "project": sweep.project,
        "group": sweep.group,
        "workspace": workspace,
        "report": report,
    }


# Saving ---------------------------------------------------------------------------------------------------


def _server_error(what: str, error: BaseException) -> ServerError:
    return ServerError(
        f"W&B could not {what} ({one_line(error)}): check that {tracking.server_url()} is reachable and the credentials "
        "are valid (`wandb login --relogin`), or use --dry-run to see the definitions"
    )


def publish(sweep: SweepRuns) -> tuple[str, str]:
    """Save the workspace and the report to W&B; their URLs.

    Each call creates a new workspace view and a new report. If the sweep folder has no online
    report run (an offline sweep synced later), it is logged first, so the report shows the figures.
    """
    _workspaces()
    if not tracking.has_credentials():
        raise ConfigError(NO_CREDENTIALS)
    import wandb

    try:
        api = wandb.Api()  # checks the key with the server: at most WANDB_HTTP_TIMEOUT (19 s) when it is down
        entity = sweep.entity or api.default_entity
    except Exception as error:
        raise _server_error("check the credentials", error) from error
    if not entity:
        raise ConfigError("W&B has no default entity for this login: pass --entity <user or team>")
    if not any((sweep.folder / run_folder.WANDB).glob("run-*")):
        log_report_run(sweep.folder, sweep.report, mode="online")
    workspace = build_workspace(sweep, entity)
    report = build_report(sweep, entity)
    for block in report.blocks:  # run sets in the report's project (looked up when saved)
        for runset in getattr(block, "runsets", None) or []:
            runset.entity, runset.project = entity, sweep.project
    try:
        workspace.save()
        report.save()
        return workspace.url, report.url
    except Exception as error:
        raise _server_error(f"save the dashboard to {entity}/{sweep.project}", error) from error


# The command ----------------------------------------------------------------------------------------------


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet.results.dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep_dir", type=Path, help="a folder under logs/train/multiruns")
    parser.add_argument("--entity", help="W&B user or team (default: logger.wandb.entity, else your default entity)")
    parser.add_argument("--project", help="W&B project (default: the sweep's logger.wandb.project)")
    parser.add_argument("--dry-run", action="store_true", help="print the definitions as JSON; no network")
    args = parser.parse_args(argv)
    sweep = read_sweep(args.sweep_dir, entity=args.entity, project=args.project)
    if args.dry_run:
        print(json.dumps(definitions(sweep), indent=2, ensure_ascii=False))
        return
    try:
        workspace_url, report_url = publish(sweep)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Not sys.exit: at exit wandb waits for its service process, which retries the failed
        # request for many minutes (measured). That process ends with this one.
        os._exit(1)
    print(f"Workspace: {workspace_url}\nReport: {report_url}")


if __name__ == "__main__":
    main()
