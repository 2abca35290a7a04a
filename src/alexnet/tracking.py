"""Experiment tracking that never stops a run: W&B online when logged in, offline otherwise.

An offline run is a real W&B run directory (``<run dir>/wandb/offline-run-*``)
that ``wandb sync`` uploads later; nothing here ever asks for a login. If W&B
is not installed or cannot start, training goes on with the CSV log alone.
"""

from __future__ import annotations

import logging
import netrc
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from lightning.pytorch.loggers import Logger, WandbLogger

from alexnet.config import current_hydra, in_multirun
from alexnet.errors import ConfigError, one_line

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")
DEFAULT_PROJECT = "alexnet-lab"
TRAIN_JOB_TYPE, FIGURES_JOB_TYPE = "train", "figures"  # W&B job types: training runs, figures of offline runs


def wandb_logged_in() -> bool:
    """True if W&B has credentials: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
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
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    if mode == "online" and not wandb_logged_in():  # wandb would stop and ask for a key
        log.warning("W&B online mode needs a login (wandb login or WANDB_API_KEY): logging offline instead")
        mode = "offline"
    return mode


def hydra_run_info() -> dict[str, Any]:
    """Name, group and tags for the W&B run from Hydra's runtime (empty outside Hydra).

    Each multirun job gets its own run, grouped by sweep, so the dashboard
    compares the sweep's points side by side.
    """
    hydra = current_hydra()
    if hydra is None:
        return {}
    experiment = hydra.runtime.choices.get("experiment") or "default"
    info: dict[str, Any] = {"tags": [experiment, hydra.runtime.choices.get("data", "data")]}
    # The config group choices, which the resolved config does not name: the dashboard groups runs by them.
    choices = {k: v for k, v in hydra.runtime.choices.items() if not k.startswith("hydra") and v is not None}
    info["config"] = {**choices, "experiment": experiment}
    info["job_type"] = TRAIN_JOB_TYPE  # the dashboard shows these, not a sweep's report and figure runs
    if in_multirun():
        info["group"] = f"{Path(hydra.sweep.dir).name}"
        info["name"] = f"{hydra.job.num}:{experiment}"
    else:
        info["name"] = f"{experiment}:{Path(hydra.runtime.output_dir).name}"
    return info


def git_commit() -> str | None:
    """The commit of the code being run (with "-dirty" if it has uncommitted changes)."""
    root = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


_online_failed = False  # once per process: the other jobs of a sweep go offline at once


def wandb_logger(
    save_dir: str,
    project: str = DEFAULT_PROJECT,
    mode: str = "auto",
    init_timeout: float = 30.0,
    finish_timeout: float = 60.0,
    **kwargs: Any,
) -> Logger | None:
    """A started ``WandbLogger``, or None (with a warning) when W&B cannot run.

    The run is started here rather than on first use, so that a W&B failure shows at the
    start. An online start waits at most ``init_timeout`` seconds for the server, then the
    run is logged offline (``wandb sync`` uploads it later), as are the later jobs of a sweep
    in this process. Logging never waits for the server; the upload at the end waits at
    most ``finish_timeout`` seconds, and what is not uploaded by then stays in the run folder.
    """
    global _online_failed
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        log.warning("wandb is not installed: logging to CSV only (pip install wandb)")
        return None
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    options = {**hydra_run_info(), **{k: v for k, v in kwargs.items() if v is not None}}
    if mode == "online" and _online_failed:
        log.warning("W&B did not answer earlier in this process: logging offline")
        mode = "offline"
    for attempt in (mode, "offline") if mode == "online" else (mode,):
        # quiet: no "logged in as" lookup, which waits 2 x 5 s more for a server that is down.
        settings = wandb.Settings(init_timeout=init_timeout, finish_timeout=finish_timeout, quiet=True)
        if attempt == "offline":
            options.pop("log_model", None)  # nothing to upload checkpoints to
        try:
            # mode= reaches wandb.init directly; Lightning's offline=True sets WANDB_MODE, which a
            # W&B that already started in this process (the failed online attempt) ignores.
            logger = WandbLogger(save_dir=save_dir, project=project, mode=attempt, settings=settings, **options)
            logger.experiment  # noqa: B018 - starts the run now
            return logger
        except Exception as error:
            _online_failed = _online_failed or attempt == "online"
            log.warning(
                "W&B could not start in %s mode (%s)", attempt, str(error).splitlines()[0] if str(error) else error
            )
    log.warning("W&B is unavailable: logging to CSV only")
    return None


def finish_wandb(loggers: list[Logger], failed: bool = False) -> None:
    """End the W&B run (multirun jobs must not share one) and say how to upload an offline one.

    ``failed``: the run ended with an error (a diverged loss, a crash): W&B marks it failed.
    """
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        try:
            run = logger.experiment
            offline = getattr(run.settings, "mode", "") in ("offline", "dryrun")
            run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
            wandb.finish(exit_code=1 if failed else 0)
        except Exception as error:  # the run's results are already on disk: never fail here
            log.warning("W&B could not finish the run cleanly (%s)", error)
            continue
        if offline and run_dir is not None:
            log.info("W&B offline run saved; upload it with: wandb sync %s", run_dir)


def wandb_run_dirs(folder: str | Path) -> list[Path]:
    """A run folder's W&B runs, oldest first: ``wandb/run-*`` (online) and ``wandb/offline-run-*``."""
    root = Path(folder) / "wandb"
    return sorted([*root.glob("run-*"), *root.glob("offline-run-*")], key=lambda p: p.name.split("-")[-2])


def log_images(folder: str | Path, images: list[Path], prefix: str = "figures") -> str | None:
    """Log image files to the W&B run of a run folder; the id of the run they went to, or None.

    An online run is resumed by its id. An offline run cannot be: ``wandb sync`` of a second
    offline folder with the same id replaces the first one's history (wandb 0.31 records no resume
    in it), so the images go to an offline run of their own, in the same group, job type "figures",
    named after the run's folder. Never raises: the images are on disk either way.
    """
    runs = wandb_run_dirs(folder)
    if not runs or not images:
        return None
    import wandb

    folder = Path(folder)
    run_id = runs[-1].name.rsplit("-", 1)[-1]
    config = folder / ".hydra" / "config.yaml"
    options = (
        ((yaml.safe_load(config.read_text()) or {}).get("logger") or {}).get("wandb") or {} if config.is_file() else {}
    )
    where = {"project": options.get("project") or DEFAULT_PROJECT, "entity": options.get("entity"), "dir": folder}
    if runs[-1].name.startswith("offline-"):
        group = folder.parent.name if (folder.parent / "multirun.yaml").is_file() else None
        where |= {"mode": "offline", "group": group, "job_type": FIGURES_JOB_TYPE, "name": f"{folder.name}: figures"}
        where["config"] = {"figures_of": run_id}
    else:
        where |= {"mode": "online", "id": run_id, "resume": "allow"}
    settings = wandb.Settings(init_timeout=30, finish_timeout=60, quiet=True, silent=True)
    try:
        run = wandb.init(settings=settings, **where)
        run.log({f"{prefix}/{path.stem}": wandb.Image(str(path), caption=path.stem) for path in images})
        run.finish()
    except Exception as error:
        log.warning("Images not logged to W&B run %s (%s)", run_id, one_line(error))
        return None
    return run.id
