"""The checkpoint of a train.py run: what it holds besides Lightning's own entries, and how it is read back.

A checkpoint is Lightning's dict (``state_dict`` with ``model.<layer>`` keys, the
optimizer, loops and callbacks) plus these entries, written by
:class:`alexnet.training.module.AlexNetModule` through :func:`run_entries`:

- ``model_name`` and ``model_kwargs``: the net's class (a key of :data:`alexnet.model.NETS`; "AlexNet" where
  absent) and its keyword arguments; ``AlexNet(**model_kwargs)`` rebuilds the net, with no Hydra and no config files.
- ``normalization``: how pixels reached the model, ``{"mean": Tensor, "input_scale": float}``
  (the mean at pixel scale [0, 1], per channel ``(3, 1, 1)`` or per pixel ``(3, H, W)``).
  A model trained on raw 0-255 pixels scores at chance on [0, 1] pixels, so whoever
  scores or uses the model normalizes as its run did.
- ``classes``: the class folder names in label order; ``class_names``: the same as words.
- ``rng_states``: the random states, for an exact resume (the module writes and reads them).
- ``hyper_parameters["config"]``: the run's resolved Hydra config, for the record only.

Checkpoints written before the first three entries existed carry the config alone;
they load the same way, with the entries derived from it.

Every checkpoint is written by :class:`AtomicCheckpointIO` (``trainer.plugins``): a process
killed while writing leaves the previous file whole, never a truncated one. A file that is
truncated anyway (a copy cut short) is named in a :class:`~alexnet.errors.CheckpointError`,
and ``ckpt_path=last`` passes over it to the newest readable checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from torch import nn

from alexnet import run_folder
from alexnet.data.stats import load_stats
from alexnet.data.transforms import IMAGENET_MEAN, SubtractMean
from alexnet.errors import CheckpointError
from alexnet.metric_names import VAL_TOP1_ERROR
from alexnet.model import build_net

log = logging.getLogger(__name__)
MODEL_TARGET = "alexnet.model.AlexNet"
DEFAULT_NET = "AlexNet"  # checkpoints from before there were other nets name none


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: a temporary file beside the target, fsync, then a rename.

    Lightning writes a checkpoint straight into place, so a kill (SIGKILL, a preempted node, a full
    disk) during the seconds it takes to write 0.7 GB leaves a truncated ``last.ckpt``, and the run
    cannot resume. Here the old file stays whole until the new one is complete on disk.
    Remote paths (``s3://...``) keep Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        run_folder.atomic_write(path, lambda file: torch.save(checkpoint, file))


def _load(path: Path) -> dict[str, Any]:
    """A checkpoint's dict, memory-mapped; a truncated or foreign file is a :class:`CheckpointError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise CheckpointError(f"{path} does not exist") from error
        raise CheckpointError(
            f"{path} is truncated or not a checkpoint ({str(error).splitlines()[0]}); pass another one "
            "(ckpt_path=last takes the newest readable one)"
        ) from error


@runtime_checkable
class DescribesInputs(Protocol):
    """What a data module tells a checkpoint: how pixels reach the model, and the labels (alexnet.data's do)."""

    normalization: SubtractMean | None
    classes: list[str]

    def class_names(self) -> list[str]: ...


def run_entries(
    model_kwargs: dict[str, Any],
    normalization: SubtractMean | None = None,
    classes: list[str] | None = None,
    class_names: list[str] | None = None,
    model_name: str = DEFAULT_NET,
) -> dict[str, Any]:
    """The entries a checkpoint carries besides Lightning's (see the module doc); plain tensors and values."""
    entries: dict[str, Any] = {"model_name": model_name, "model_kwargs": dict(model_kwargs)}
    if normalization is not None:
        entries["normalization"] = {"mean": normalization.mean.cpu(), "input_scale": float(normalization.input_scale)}
    if classes is not None:
        entries["classes"] = list(classes)
        entries["class_names"] = list(class_names) if class_names is not None else list(classes)
    return entries


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its run; ``None`` where it does not say (older checkpoints)."""

    path: Path
    model_name: str
    model_kwargs: dict[str, Any]
    normalization: SubtractMean | None
    classes: list[str] | None
    class_names: list[str] | None
    config: dict[str, Any]
    epoch: int | None
    global_step: int | None


def _model_kwargs(checkpoint: dict[str, Any], config: dict[str, Any], path: Path) -> dict[str, Any]:
    if "model_kwargs" in checkpoint:
        return dict(checkpoint["model_kwargs"])
    model = dict(config.get("model") or {})  # older checkpoints: the model's Hydra config
    target = model.pop("_target_", None)
    if target != MODEL_TARGET:
        raise CheckpointError(
            f"{path} was not written by train.py for alexnet.model.AlexNet (it stores no model arguments); "
            "pass a checkpoint from logs/train/.../checkpoints"
        )
    return model


def _normalization(checkpoint: dict[str, Any], config: dict[str, Any]) -> SubtractMean | None:
    entry = checkpoint.get("normalization")
    if entry is not None:
        return SubtractMean(entry["mean"], entry["input_scale"])
    data = config.get("data") or {}  # older checkpoints: the data config, and its stats file if still there
    if not data:
        return None
    mean: Any = data.get("mean", IMAGENET_MEAN)
    if data.get("stats") is not None:
        if not Path(data["stats"]).is_file():
            return None
        stats = load_stats(data["stats"])
        mean = stats["mean_image"] if data.get("per_pixel_mean") else stats["mean"]
    return SubtractMean(mean, data.get("input_scale", 255.0))


def _info(checkpoint: dict[str, Any], path: Path) -> CheckpointInfo:
    config = checkpoint.get("hyper_parameters", {}).get("config", {})
    return CheckpointInfo(
        path=path,
        model_name=checkpoint.get("model_name", DEFAULT_NET),
        model_kwargs=_model_kwargs(checkpoint, config, path),
        normalization=_normalization(checkpoint, config),
        classes=checkpoint.get("classes"),
        class_names=checkpoint.get("class_names"),
        config=config,
        epoch=checkpoint.get("epoch"),
        global_step=checkpoint.get("global_step"),
    )


def load_model(path: str | Path) -> tuple[nn.Module, CheckpointInfo]:
    """The trained net of a checkpoint, in eval mode on the CPU, and what the checkpoint says about its run."""
    path = Path(path)
    checkpoint = _load(path)
    info = _info(checkpoint, path)
    model = build_net(info.model_name, info.model_kwargs)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.eval(), info


def model_identity(model_name: str, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What tells two nets apart: their class (as ``"net"``) and their arguments."""
    return {"net": model_name, **model_kwargs}


def model_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``model.<key>: stored -> current`` for every argument in which two nets (:func:`model_identity`) differ.

    Arguments without a ``"net"`` are AlexNet's (what every checkpoint held before there were other nets).
    """
    stored, current = ({"net": DEFAULT_NET, **identity} for identity in (stored, current))
    differ = sorted(k for k in {*stored, *current} if stored.get(k) != current.get(k))
    if "net" in differ:  # another class altogether: its arguments do not compare
        return [f"the net: {stored.get('net')} -> {current.get('net')}"]
    return [f"model.{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in differ]


def _identity(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    kwargs = _model_kwargs(checkpoint, checkpoint.get("hyper_parameters", {}).get("config", {}), path)
    return model_identity(checkpoint.get("model_name", DEFAULT_NET), kwargs)


def stored_model_identity(path: str | Path) -> dict[str, Any]:
    """The net's class and arguments alone (no normalization, no stats file read), memory-mapped."""
    return _identity(_load(Path(path)), Path(path))


def find_last(
    log_dir: str | Path, model: dict[str, Any] | None = None, patterns: tuple[str, ...] | None = None
) -> Path:
    """The newest readable checkpoint of a train.py run under ``log_dir`` (of the same net, given ``model``, its
    :func:`model_identity`).

    Normally the newest ``last.ckpt``. A truncated or unreadable file is passed over with a warning,
    for the next newest one: another ``last.ckpt``, or a best-so-far checkpoint beside it.
    ``patterns``: where to look under ``log_dir`` (default: every run's folder under ``train/``).
    """
    patterns = patterns or tuple(f"train/**/{pattern}" for pattern in run_folder.CHECKPOINT_PATTERNS)
    found = {path for pattern in patterns for path in Path(log_dir).glob(pattern)}

    # Newest first; on a tie (coarse mtimes), the resume checkpoints before a best-so-far one.
    def resumes(path: Path) -> bool:
        return path.name == run_folder.LAST_CHECKPOINT or path.match(run_folder.REQUEUE_CHECKPOINTS)

    newest = sorted(found, key=lambda p: (p.stat().st_mtime, resumes(p)))
    for path in reversed(newest):
        try:
            checkpoint = _load(path)
        except CheckpointError as error:
            log.warning("Passing over %s", error)
            continue
        try:
            stored = _identity(checkpoint, path)
        except CheckpointError:  # not a checkpoint of a train.py run
            continue
        if model is None or not model_changes(stored, model):
            return path
    which = " of this model (same model.* settings)" if model is not None else ""
    raise CheckpointError(f"ckpt_path=last: no readable checkpoint{which} under {log_dir}; nothing to resume")


def resolve_ckpt_path(ckpt_path: str | None, log_dir: str | Path, model: dict[str, Any] | None = None) -> str | None:
    """The checkpoint to resume or evaluate; ``"last"`` is the newest ``last.ckpt`` under ``log_dir``.

    With ``model`` (the :func:`model_identity` of the net about to be trained), ``"last"`` only considers
    checkpoints of that same net, and an explicit file of another net is refused:
    an ablation's weights (say, without LRN) have the same shapes and would load silently.
    """
    if ckpt_path is None:
        return None
    if ckpt_path == "last":  # already of this net, when model is given
        path = find_last(log_dir, model)
        log.info("Using checkpoint %s", path)
        return str(path)
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={ckpt_path} does not exist")
    if model is not None:
        changes = model_changes(stored_model_identity(path), model)
        if changes:
            raise CheckpointError(
                f"{path} holds another model ({', '.join(changes)}); resume it with the settings it was trained with"
            )
    log.info("Using checkpoint %s", path)
    return str(path)


def global_step(path: str | Path) -> int:
    """The optimizer steps a checkpoint had taken: a run resumed from it logs this step first."""
    return int(_load(Path(path)).get("global_step", 0))


def recorded_best(path: str | Path) -> str | None:
    """The file name of the best checkpoint by validation top-1 error when ``path`` was written, or None.

    Lightning's ModelCheckpoint keeps its state in every checkpoint; the one monitoring the validation
    error knows which file was the best so far. An unreadable checkpoint records nothing.
    """
    try:
        callbacks = _load(Path(path)).get("callbacks") or {}
    except CheckpointError:
        return None
    for state in callbacks.values():
        if isinstance(state, dict) and state.get("monitor") == VAL_TOP1_ERROR and state.get("best_model_path"):
            return Path(state["best_model_path"]).name
    return None
