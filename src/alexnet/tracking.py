"""The W&B session: credentials, the mode, and a start that never asks for a login and never stops a run.

Every W&B run the project makes starts through :func:`start`: a training run (its Lightning logger,
:func:`alexnet.training.loggers.wandb_logger`), the figures of a run (:func:`log_images`) and a
sweep's report run (:func:`alexnet.results.report.log_report_run`). Online when W&B has credentials
and ``offline`` otherwise; an online start waits at most ``init_timeout`` seconds for the server and
then goes offline (``wandb sync`` uploads it later), as do the later online starts of this process.
An offline run is a real W&B run directory (``<run folder>/wandb/offline-run-*``).
"""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from alexnet import run_folder
from alexnet.errors import ConfigError, one_line
from alexnet.metric_names import FIGURES_PREFIX

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")
DEFAULT_PROJECT = "alexnet-lab"
# W&B job types: the dashboard shows the training runs; a sweep's report and an offline run's figures have their own.
TRAIN_JOB_TYPE, FIGURES_JOB_TYPE, REPORT_JOB_TYPE = "train", "figures", "report"
DEFAULT_SERVER = "https://api.wandb.ai"
Started = TypeVar("Started")

_online_failed = False  # once per process: the later online starts (a sweep's next jobs) go offline at once


def server_url() -> str:
    """The W&B server: ``WANDB_BASE_URL``, else W&B's cloud."""
    return os.environ.get("WANDB_BASE_URL", DEFAULT_SERVER).rstrip("/")


def has_credentials() -> bool:
    """True if W&B has credentials for its server: ``WANDB_API_KEY`` or a netrc entry (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(server_url()).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    """Resolve "auto": online with credentials, offline without; ``WANDB_MODE`` wins if set.

    Online without credentials becomes offline, so a run never waits at a login prompt.
    """
    if mode not in MODES:
        raise ConfigError(f"logger.wandb.mode={mode!r} is not valid; allowed values: {list(MODES)}")
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if has_credentials() else "offline")
    if mode == "online" and not has_credentials():  # wandb would stop and ask for a key
        log.warning("W&B online mode needs a login (wandb login or WANDB_API_KEY): logging offline instead")
        mode = "offline"
    return mode


def settings(init_timeout: float = 30.0, finish_timeout: float = 60.0, **kwargs: Any) -> Any:
    """``wandb.Settings`` that bound the waits: ``init_timeout`` for the start, ``finish_timeout`` for the upload.

    ``quiet``: no "logged in as" lookup, which waits 2 x 5 s more for a server that is down.
    Measured with the server stalled: ``wandb.finish()`` still blocked after 650 s by default.
    """
    import wandb

    return wandb.Settings(init_timeout=init_timeout, finish_timeout=finish_timeout, quiet=True, **kwargs)


def start(begin: Callable[[str], Started], mode: str, what: str = "W&B", fallback: bool = True) -> Started | None:
    """``begin(mode)``, which starts a W&B run; online failing, ``begin("offline")``; None if W&B cannot run.

    ``mode``: as :func:`resolve_mode` takes it. Pass ``mode=`` on to ``wandb.init`` (directly or through
    Lightning's ``WandbLogger``): ``WANDB_MODE``, which Lightning's ``offline=True`` sets, is ignored by a W&B
    that already started in this process (the failed online attempt). ``fallback=False``: in ``mode`` or
    not at all (a run resumed by its id exists in one mode only). Never raises for W&B's own failures.
    """
    global _online_failed
    requested, mode = mode, resolve_mode(mode)
    if mode == "disabled":
        return None
    try:
        import wandb  # noqa: F401
    except ImportError:
        log.warning("wandb is not installed: %s not logged to W&B (pip install wandb)", what)
        return None
    if mode == "online" and _online_failed:
        log.warning("W&B did not answer earlier in this process: %s logged offline", what)
        mode = "offline"
    if not fallback and requested != "auto" and mode != requested:
        log.warning("W&B cannot log %s %s here: not logged to W&B", what, requested)
        return None
    for attempt in (mode, "offline") if mode == "online" and fallback else (mode,):
        try:
            return begin(attempt)
        except Exception as error:
            _online_failed = _online_failed or attempt == "online"
            log.warning("W&B could not start %s in %s mode (%s)", what, attempt, one_line(error))
    log.warning("W&B is unavailable: %s not logged to W&B", what)
    return None


def finish(run: Any, failed: bool = False) -> None:
    """End a W&B run (W&B marks it failed if ``failed``) and say how to upload it if it is offline. Never raises.

    A run continued in its folder (a resume, a requeue) has an offline directory per segment, all with
    one id: the command names them all, and ``wandb sync --id`` uploads them in order into one run.
    """
    try:
        offline = getattr(run.settings, "mode", "") in ("offline", "dryrun")
        run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
        run.finish(exit_code=1 if failed else 0)
    except Exception as error:  # the run's results are already on disk
        log.warning("W&B could not finish the run cleanly (%s)", one_line(error))
        return
    if offline and run_dir is not None:
        log.info("W&B offline run saved; upload it with: %s", sync_command(run_dir))


def sync_command(run_dir: str | Path) -> str:
    """``wandb sync`` for an offline run directory and the earlier segments of the same run beside it."""
    run_id = run_folder.wandb_run_id(run_dir)
    segments = run_folder.wandb_runs_of(Path(run_dir).parent.parent, run_id)
    if len(segments) <= 1:
        return f"wandb sync {run_dir}"
    offline = [d for d in segments if d.name.startswith("offline-")]  # the online ones are uploaded already
    return f"wandb sync --id {run_id} " + " ".join(str(d) for d in offline)


def options_of(folder: str | Path) -> dict[str, Any]:
    """The ``logger.wandb`` settings a run or a sweep ran with, from its folder ({} if none)."""
    options = (run_folder.read_config(folder).get("logger") or {}).get("wandb") or {}
    return options if isinstance(options, dict) else {}


def project_of(folder: str | Path) -> tuple[str, str | None]:
    """The W&B project and entity a run or sweep logged to (its ``logger.wandb``), from its folder."""
    options = options_of(folder)
    return options.get("project") or DEFAULT_PROJECT, options.get("entity")


def log_images(folder: str | Path, images: list[Path], prefix: str = FIGURES_PREFIX) -> str | None:
    """Log image files to the W&B run of a run folder; the id of the run they went to, or None.

    An online run is resumed by its id. An offline run cannot be: ``wandb sync`` of a second
    offline folder with the same id replaces the first one's history (wandb 0.31 records no resume
    in it), so the images go to an offline run of their own, in the same group, job type "figures",
    named after the run's folder. Never raises: the images are on disk either way.
    """
    runs = run_folder.wandb_runs(folder)
    if not runs or not images:
        return None
    import wandb

    folder = Path(folder)
    run_id = run_folder.wandb_run_id(runs[0])  # the training run's (its segments share it; figures runs follow)
    project, entity = project_of(folder)
    where: dict[str, Any] = {"project": project, "entity": entity, "dir": folder}
    if runs[-1].name.startswith("offline-"):
        group = folder.parent.name if run_folder.is_sweep(folder.parent) else None
        where |= {"group": group, "job_type": FIGURES_JOB_TYPE, "name": f"{folder.name}: figures"}
        where |= {"config": {"figures_of": run_id}}
        mode = "offline"
    else:
        where |= {"id": run_id, "resume": "allow"}
        mode = "online"

    def begin(attempt: str) -> Any:
        return wandb.init(mode=attempt, settings=settings(silent=True), **where)

    run = start(begin, mode, f"the figures of {folder.name}", fallback=False)  # an online run's go to it or nowhere
    if run is None:
        return None
    try:
        run.log({f"{prefix}/{path.stem}": wandb.Image(str(path), caption=path.stem) for path in images})
    except Exception as error:
        log.warning("Images not logged to W&B run %s (%s)", run_id, one_line(error))
        finish(run, failed=True)
        return None
    finish(run)
    return run.id
