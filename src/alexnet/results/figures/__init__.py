"""The paper's Figures 1, 3 and 4 and the sweep report's plots, drawn with matplotlib's object API (no display).

``python -m alexnet.results.figures <run dir | sweep dir>`` (:mod:`alexnet.results.figures.__main__`) draws them into
``<dir>/figures/``:

- ``fig1_relu_vs_tanh.png`` (``experiment=cifar_fig1``, or a sweep with ``baseline`` and ``ablate_relu``): training error against
  epochs and against wall-clock time, the 25% line, and how much sooner ReLU gets there.
- ``fig3_conv1.png``: the conv1 kernels of the best checkpoint, one block per tower (§6.1).
- ``fig4_predictions.png``: eight validation images with their top-5 classes as bars, the true one red.
- ``fig4_neighbours.png``: five validation images and the six training images nearest to each by the
  Euclidean distance of their fc7 activations (§6.1), searched in batches among at most
  ``max_train_images`` training images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

from alexnet import metric_names, run_folder
from alexnet.errors import DataError, UserError
from alexnet.model.filters import conv1_grids
from alexnet.results.statistics import Estimate, ratio
from alexnet.results.sweep import BASELINES, Job, Row, best_checkpoint, per_epoch

if TYPE_CHECKING:
    from alexnet.checkpoint import CheckpointInfo
    from alexnet.model import AlexNet

log = logging.getLogger(__name__)

JOB_FIGURES = {  # drawn from a job's best checkpoint
    "fig3_conv1.png": "Figure 3, conv1's kernels",
    "fig4_predictions.png": "Figure 4 (left), top-5 predictions",
    "fig4_neighbours.png": "Figure 4 (right), nearest training images by fc7 activations",
}
PAPER_SPEEDUP = 6.0  # Figure 1: ReLU reaches 25% training error six times sooner than tanh
TARGET_ERROR = 0.25
DPI = 120


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


# From the logs -----------------------------------------------------------------------------------------


def _curves(jobs: Sequence[Job], key: str) -> tuple[list[int], list[list[float]]]:
    """The epochs every job logged ``key`` at, and each job's values there."""
    series = [per_epoch(job.metrics, key) for job in jobs]
    series = [s for s in series if s]
    epochs = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return epochs, [[s[e] for e in epochs] for s in series]


def val_error_per_epoch(rows: Sequence[Row], path: Path) -> Path | None:
    """Validation top-1 error after each epoch, per row: the mean over finished seeds and a band from min to max."""
    figure = Figure(figsize=(7, 4.2))
    axes = figure.subplots()
    for row in rows:
        epochs, values = _curves(row.finished, metric_names.VAL_TOP1_ERROR)
        if not epochs:
            continue
        x = [e + 1 for e in epochs]
        per_epoch_values = list(zip(*values, strict=True))
        mean = [100 * sum(v) / len(v) for v in per_epoch_values]
        (line,) = axes.plot(x, mean, marker="o", label=f"{row.label} ({len(values)} seeds)")
        if len(values) > 1:
            low, high = ([100 * f(v) for v in per_epoch_values] for f in (min, max))
            axes.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if not axes.lines:  # no job logged a validation error (no metrics.csv)
        return None
    axes.set(xlabel="epoch", ylabel="validation top-1 error (%)", title="Validation error per epoch")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def deltas(rows: Sequence[Row], path: Path) -> Path | None:
    """Each row's Δ top-1 error against the baseline with its 95% interval, the paper's claimed Δ beside it."""
    shown = [row for row in rows if row.deltas.get("top-1 error") is not None]
    if not shown:
        return None
    figure = Figure(figsize=(7, 0.6 * len(shown) + 1.4))
    axes = figure.subplots()
    for y, row in enumerate(shown):
        delta = row.deltas["top-1 error"]
        if delta.low is not None:
            axes.errorbar(delta.mean, y, xerr=[[delta.mean - delta.low], [delta.high - delta.mean]], fmt="o",
                          color="tab:blue", capsize=4, label="measured Δ, 95% interval")  # fmt: skip
        else:
            axes.plot(delta.mean, y, "o", color="tab:blue", label="measured Δ (one seed: no interval)")
        claim = row.claim
        if claim is not None and claim.top1 is not None:
            axes.plot(claim.top1, y, "D", color="tab:red", label="the paper's Δ")
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(shown)), [row.label for row in shown])
    axes.invert_yaxis()
    axes.set(xlabel="Δ top-1 error against the baseline (percentage points)", title="Ablations against the paper")
    axes.grid(axis="x", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        axes.legend(dict(zip(labels, handles, strict=True)).values(), dict.fromkeys(labels), fontsize=8)
    return _save(figure, path)


def crossing(x: Sequence[float], error: Sequence[float], target: float = TARGET_ERROR) -> float | None:
    """Where a curve first reaches ``target`` (linear between points); None if it never does."""
    for i, value in enumerate(error):
        if value <= target:
            if i == 0:
                return x[0]
            x0, x1, e0 = x[i - 1], x[i], error[i - 1]
            return x0 + (x1 - x0) * (e0 - target) / (e0 - value)
    return None


def speedup(relu: float | None, tanh: float | None, tanh_end: float, unit: str = "epochs") -> str:
    """Where each reached the target and how many times sooner ReLU did, in words (a bound if tanh never did)."""
    if relu is None:
        return "ReLU did not reach 25%"
    if tanh is None and tanh_end <= relu:
        return f"ReLU at {relu:.2f} {unit}, tanh not within its {tanh_end:.2f}: no bound"
    if tanh is None:
        return f"ReLU at {relu:.2f} {unit}, tanh not within {tanh_end:.2f}: more than {tanh_end / relu:.1f}x sooner"
    return f"ReLU at {relu:.2f} {unit}, tanh at {tanh:.2f}: {tanh / relu:.1f}x sooner"


def _chance(job: Job) -> float | None:
    """1 - 1/classes, the training error before the first step; None if the run's class count is not a number."""
    for name, path in ((run_folder.HPARAMS, ("config", "model")), (run_folder.CONFIG, ("model",))):  # resolved first
        file = job.folder / name
        try:
            config = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for key in path:
            config = config.get(key) or {} if isinstance(config, dict) else {}
        classes = config.get("num_classes") if isinstance(config, dict) else None
        if isinstance(classes, int) and classes > 0:  # not an unresolved ${num_classes_in:...}
            return 1 - 1 / classes
    return None


def _train_curve(job: Job) -> tuple[list[float], list[float], list[float]] | None:
    """One job's epochs, seconds and training top-1 error; starting at chance before the first step.

    Never a mean over seeds: the jobs stop at 25%, each at its own epoch.
    """
    errors = per_epoch(job.metrics, metric_names.TRAIN_TOP1_ERROR_EPOCH)
    if not errors:
        return None
    times = per_epoch(job.metrics, metric_names.TRAIN_TIME)  # seconds since training started, at each epoch's end
    x = [e + 1.0 for e in errors]
    seconds = [times[e] for e in errors] if set(errors) <= set(times) else []
    start = _chance(job)
    if start is None:
        return x, seconds, list(errors.values())
    return [0.0, *x], [0.0, *seconds] if seconds else [], [start, *errors.values()]


def activation_rows(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Figure 1's rows of a sweep by activation: ``model.activation=relu,tanh`` swept (``experiment=cifar_fig1``,
    several rows each when a learning rate is swept too), or the ``baseline`` (ReLU) and ``ablate_relu`` (tanh)
    rows of an ablation sweep; empty when the sweep has not both."""
    found: dict[str, list[Row]] = {"relu": [], "tanh": []}
    for row in rows:
        activation = row.jobs[0].swept.get("model.activation")
        if activation in found:
            found[activation].append(row)
    if all(found.values()):
        return found
    relu = next((row for row in rows if row.experiment in BASELINES), None)
    tanh = next((row for row in rows if row.experiment == "ablate_relu" and relu and row.baseline == relu.label), None)
    return {} if relu is None or tanh is None else {"relu": [relu], "tanh": [tanh]}


@dataclass(frozen=True)
class Reached:
    """When one job's epoch training error first fell to 25%, in epochs and in seconds of training (None: never),
    and how far it trained."""

    seed: str | None
    epochs: float | None
    seconds: float | None
    trained_epochs: float
    trained_seconds: float | None
    last_error: float  # the training error of its last epoch


def reached(job: Job, target: float = TARGET_ERROR) -> Reached | None:
    """Where the job's training curve (chance before the first step) crosses ``target``; None without a curve."""
    curve = _train_curve(job)
    if curve is None:
        return None
    epochs, seconds, errors = curve
    return Reached(
        job.seed, crossing(epochs, errors, target), crossing(seconds, errors, target) if seconds else None,
        epochs[-1], seconds[-1] if seconds else None, errors[-1],
    )  # fmt: skip


@dataclass(frozen=True)
class Speedup:
    """Figure 1's claim measured: per seed when each net reached 25%, and how many times sooner ReLU did.

    ``epochs``/``seconds``: tanh's over ReLU's, over the seeds where both reached it (geometric mean with its
    95% interval, :func:`alexnet.results.statistics.ratio`); ``bounds``: a seed where only ReLU reached it gives
    at least tanh's training length over ReLU's. With a learning rate swept, each activation's row is the
    fastest to 25% (the paper: "chosen independently to make training as fast as possible"); ``search`` holds
    every candidate with its crossings.
    """

    relu_row: Row
    tanh_row: Row
    relu: list[Reached]
    tanh: list[Reached]
    epochs: Estimate | None
    seconds: Estimate | None
    bounds: list[float]
    search: list[tuple[str, Row, list[Reached]]]


def _reached_all(row: Row, target: float) -> list[Reached]:
    return [r for job in row.finished if (r := reached(job, target)) is not None]


def _speed(reached_: list[Reached]) -> tuple[float, float]:
    """How fast a candidate got to the target: the mean epochs to it (a seed that never got there counts as
    infinitely slow), then, between those that never did, the lower mean last training error."""
    if not reached_:
        return math.inf, math.inf
    last = sum(r.last_error for r in reached_) / len(reached_)
    if any(r.epochs is None for r in reached_):
        return math.inf, last
    return sum(r.epochs for r in reached_) / len(reached_), last


def figure1_speedup(rows: Sequence[Row], target: float = TARGET_ERROR) -> Speedup | None:
    """The speed-up of ReLU over tanh to ``target`` training error, seed by seed; None without Figure 1's rows."""
    by_activation = activation_rows(rows)
    if not by_activation:
        return None
    search = [(activation, row, _reached_all(row, target)) for activation, group in by_activation.items()
              for row in group]  # fmt: skip
    chosen = {activation: min(((row, r) for a, row, r in search if a == activation), key=lambda c: _speed(c[1]))
              for activation in by_activation}  # fmt: skip
    (relu_row, relu), (tanh_row, tanh) = chosen["relu"], chosen["tanh"]
    relu_by_seed, tanh_by_seed = {r.seed: r for r in relu}, {r.seed: r for r in tanh}
    per_seed = {unit: ({s: getattr(r, unit) for s, r in tanh_by_seed.items() if getattr(r, unit)},
                       {s: getattr(r, unit) for s, r in relu_by_seed.items() if getattr(r, unit)})
                for unit in ("epochs", "seconds")}  # fmt: skip
    bounds = [t.trained_epochs / relu_by_seed[s].epochs for s, t in tanh_by_seed.items()
              if t.epochs is None and s in relu_by_seed and relu_by_seed[s].epochs]  # fmt: skip
    return Speedup(relu_row, tanh_row, relu, tanh, ratio(*per_seed["epochs"]), ratio(*per_seed["seconds"]), bounds,
                   search if len(search) > 2 else [])  # fmt: skip


def speedup_cell(value: Estimate | None) -> str:
    """A speed-up with its interval: ``1.6x [1.4, 1.8]``."""
    if value is None:
        return "-"
    return f"{value.mean:.1f}x" + ("" if value.low is None else f" [{value.low:.1f}, {value.high:.1f}]")


def relu_vs_tanh(rows: Sequence[Row], path: Path) -> str | None:
    """Figure 1 from a sweep's ReLU and tanh rows (:func:`figure1_speedup`'s); returns its speed-up line.

    Every seed's own curve: the jobs stop at 25%, each at its own epoch, so a mean over seeds would end
    with the first to stop and cross the line late or not at all. With several seeds the line gives the
    seed-by-seed measurement of the report's table.
    """
    measured = figure1_speedup(rows)
    if measured is None:
        return None
    curves = {name: [c for c in (_train_curve(job) for job in row.finished) if c is not None]
              for name, row in (("ReLU", measured.relu_row), ("tanh", measured.tanh_row))}  # fmt: skip
    if not all(curves.values()):
        return None
    figure = Figure(figsize=(11, 4.2))
    by_epoch, by_time = figure.subplots(1, 2)
    longest = max(seconds[-1] if seconds else 0.0 for series in curves.values() for _, seconds, _ in series)
    unit, unit_name = (60.0, "minutes") if longest > 120 else (1.0, "seconds")
    for name, series in curves.items():
        style = "-" if name == "ReLU" else "--"  # as in the paper: ReLU solid, tanh dashed
        alpha = 1.0 if len(series) == 1 else 0.6
        for i, (epochs, seconds, errors) in enumerate(series):
            percent, label = [100 * e for e in errors], name if i == 0 else None
            by_epoch.plot(epochs, percent, style, color="black", alpha=alpha, linewidth=1, label=label)
            if seconds:
                by_time.plot([s / unit for s in seconds], percent, style, color="black", alpha=alpha, linewidth=1,
                             label=label)  # fmt: skip
    if len(measured.relu) == 1 and len(measured.tanh) == 1:
        (relu,), (tanh,) = measured.relu, measured.tanh
        line = "25% training error: " + speedup(relu.epochs, tanh.epochs, tanh.trained_epochs)
        if relu.trained_seconds and tanh.trained_seconds:
            to_unit = [None if v is None else v / unit for v in (relu.seconds, tanh.seconds)]
            line += "; " + speedup(*to_unit, tanh.trained_seconds / unit, unit_name)
    else:
        line = f"25% training error, {len(measured.relu)} ReLU and {len(measured.tanh)} tanh seeds: tanh / ReLU "
        line += f"{speedup_cell(measured.epochs)} in epochs, {speedup_cell(measured.seconds)} in time"
        if measured.bounds:
            line += f", more than {min(measured.bounds):.1f}x where tanh never got there"
    line += f" (the paper: {PAPER_SPEEDUP:.0f}x, on CIFAR-10)."
    for axes, xlabel in ((by_epoch, "epochs"), (by_time, f"{unit_name} of training")):
        axes.axhline(100 * TARGET_ERROR, color="tab:red", linewidth=0.8, label="25% training error")
        axes.set(xlabel=xlabel, ylabel="training top-1 error (%)", ylim=(0, None))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"Figure 1: training error of ReLU (solid) and tanh (dashed)\n{line}", fontsize=9)
    _save(figure, path)
    return line


# From a checkpoint -------------------------------------------------------------------------------------


def conv1_kernels(model: AlexNet, path: Path) -> Path:
    """Figure 3: conv1's kernels, each stretched to [0, 1], the first tower's block above the second's."""
    grids = conv1_grids(model.conv1.weight, model.towers)
    figure = Figure(figsize=(10, 2.6 * len(grids)))
    for axes, (tower, grid) in zip(
        figure.subplots(len(grids), 1, squeeze=False)[:, 0], enumerate(grids, 1), strict=True
    ):
        axes.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        axes.set_title(f"tower {tower}" if len(grids) > 1 else "one tower", fontsize=9)
        axes.axis("off")
    figure.suptitle(f"Figure 3: the {model.conv1.out_channels} conv1 kernels (11x11x3)", fontsize=10)
    return _save(figure, path)


def _picks(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over a data set (ImageFolder sorts by class: a spread of classes)."""
    return sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(min(count, total))})


SHOWN = v2.Compose([v2.ToImage(), v2.Resize(256, antialias=True), v2.CenterCrop(256), v2.CenterCrop(227)])


def _show(axes: Any, image: Tensor, title: str = "", colour: str = "black") -> None:
    axes.imshow(image.permute(1, 2, 0).numpy())
    axes.set_title(title, fontsize=7, color=colour)
    axes.set_xticks([])
    axes.set_yticks([])


@torch.inference_mode()
def predictions(model: AlexNet, to_input: Any, val: Dataset, names: list[str], path: Path) -> Path:
    """Figure 4 (left): eight validation images, each with its top-5 classes as bars; the true class in red."""
    device = next(model.parameters()).device
    images = [val[i] for i in _picks(8, len(val))]  # (image as loaded, label)
    inputs = torch.stack([to_input(image) for image, _ in images]).to(device)  # (8, 3, 227, 227)
    top = model(inputs).float().softmax(-1).topk(min(5, model.num_classes), dim=-1)
    columns = 4
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(3 * columns, 4.4 * rows))
    grid = figure.add_gridspec(2 * rows, columns, height_ratios=[3, 1.6] * rows, hspace=0.35, wspace=0.6)
    for n, (image, label) in enumerate(images):
        r, c = divmod(n, columns)
        _show(figure.add_subplot(grid[2 * r, c]), SHOWN(image), names[label])
        bars = figure.add_subplot(grid[2 * r + 1, c])
        indices, values = top.indices[n].tolist(), top.values[n].tolist()
        colours = ["tab:red" if i == label else "tab:gray" for i in indices]
        bars.barh(range(len(indices)), values, color=colours)
        bars.set_yticks(range(len(indices)), [names[i][:22] for i in indices], fontsize=7)
        bars.invert_yaxis()
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize=6)
    figure.suptitle(
        "Figure 4 (left): the true class under each image; its bar red where it is in the top 5", fontsize=10
    )
    return _save(figure, path)


def nearest_neighbours(queries: Tensor, keys: Iterable[Tensor], k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` keys nearest to each query by Euclidean distance, the keys coming in batches.

    Returns (distances, indices), each (Q, k), nearest first; indices count over all batches. Only
    the best ``k`` so far are kept, so the keys (1.2 million 4096-d vectors on ImageNet) never all sit in memory.
    """
    best_distances = queries.new_empty(queries.shape[0], 0)
    best_indices = torch.empty(queries.shape[0], 0, dtype=torch.int64)
    seen = 0
    for batch in keys:  # (B, D)
        distances = torch.cdist(queries.double(), batch.double())  # (Q, B)
        indices = torch.arange(seen, seen + batch.shape[0]).expand(queries.shape[0], -1)  # (Q, B)
        seen += batch.shape[0]
        merged = torch.cat([best_distances.double(), distances], dim=1)  # (Q, k + B)
        merged_indices = torch.cat([best_indices, indices], dim=1)
        order = merged.topk(min(k, merged.shape[1]), dim=1, largest=False).indices  # (Q, k), nearest first
        best_distances, best_indices = merged.gather(1, order), merged_indices.gather(1, order)
    return best_distances, best_indices


class _Transformed(Dataset):
    """``(transform(image), label)`` of a data set of ``(image, label)``: one listing of the files, two uses."""

    def __init__(self, images: Dataset, transform: Any) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.images[index]
        return self.transform(image), label


def _features(model: AlexNet, images: Dataset, batch_size: int, num_workers: int) -> Iterable[Tensor]:
    device = next(model.parameters()).device
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    with torch.inference_mode():
        for inputs, _ in loader:
            yield model.last_hidden(inputs.to(device)).float().cpu()  # (B, 4096)


def neighbours(
    model: AlexNet,
    to_input: Any,
    val: Dataset,
    train: Dataset,
    names: list[str],
    path: Path,
    max_train_images: int | None = 10_000,
    batch_size: int = 64,
    num_workers: int = 0,
) -> Path:
    """Figure 4 (right): five validation images, and the six training images nearest to each by fc7 activations.

    ``val``, ``train``: ``(image as loaded, label)``; ``to_input`` makes an image the model's input.
    """
    queries = _picks(5, len(val))
    searched = list(range(len(train)))
    if max_train_images is not None and len(train) > max_train_images:  # a fixed random sample of the training set
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:max_train_images]
        searched = sorted(order.tolist())
    query_features = torch.cat(list(_features(model, Subset(_Transformed(val, to_input), queries), batch_size, 0)))
    keys = _features(model, Subset(_Transformed(train, to_input), searched), batch_size, num_workers)
    distances, indices = nearest_neighbours(query_features, keys, k=6)  # (5, 6) each
    figure = Figure(figsize=(14, 2.2 * len(queries)))
    grid = figure.subplots(len(queries), 7, squeeze=False)
    for row, query in enumerate(queries):
        image, label = val[query]
        _show(grid[row, 0], SHOWN(image), f"query: {names[label]}", "tab:blue")
        for column, (distance, index) in enumerate(zip(distances[row], indices[row], strict=True), 1):
            image, label = train[searched[int(index)]]
            _show(grid[row, column], SHOWN(image), f"{names[label]} ({distance:.3g})")
    sample = " (a fixed random sample)" if len(searched) < len(train) else ""
    figure.suptitle(
        f"Figure 4 (right): the six nearest by fc7 activations among {len(searched):,} training images{sample}",
        fontsize=10,
    )
    return _save(figure, path)


def _datamodule(info: CheckpointInfo, data_root: str | None) -> Any:
    """The run's data module, to list its images: not set up (its statistics are the checkpoint's)."""
    from hydra.utils import instantiate

    data = dict(info.config.get("data") or {})
    if "_target_" not in data:
        raise UserError(f"{info.path} does not say which data its run used: Figure 4 needs a checkpoint of train.py")
    if data_root is not None:
        data["root"] = data_root
        data["stats"] = None  # a path under the old root; the normalization comes from the checkpoint
    data["verify"] = False  # the run checked its images
    if not Path(data["root"]).expanduser().is_dir():
        raise DataError(f"the run's data {data['root']} does not exist: pass --data-root <where it is now>")
    return instantiate(data, _execution_whitelist_="alexnet.data.*")  # a checkpoint's config: data modules only


def job_figures(
    job: Job, data_root: str | None = None, max_train_images: int | None = 10_000, num_workers: int = 0
) -> list[Path]:
    """Figures 3 and 4 from a job's best checkpoint, into ``<job>/figures/``."""
    from alexnet.checkpoint import load_model

    checkpoint = best_checkpoint(job)
    if checkpoint is None:
        raise UserError(f"{job.folder} has no checkpoint (checkpoints/*.ckpt): was it trained with checkpoints on?")
    model, info = load_model(checkpoint)
    if info.model_name != "AlexNet":  # Figures 3 and 4 show AlexNet's conv1 and fc7 on ImageNet-sized images
        raise UserError(f"{checkpoint} holds a {info.model_name}: Figures 3 and 4 are drawn for AlexNet only")
    if info.normalization is None:
        raise UserError(f"{checkpoint} does not say how its run normalized pixels: draw with a newer checkpoint")
    from alexnet.data import eval_transform

    out = job.folder / run_folder.FIGURES
    datamodule = _datamodule(info, data_root)
    val, train = datamodule.images("val"), datamodule.images("train")  # each folder listed once
    names = info.class_names or datamodule.class_names()
    to_input = eval_transform(info.normalization)  # §2's 256 and centre 227, normalized as the run did
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    log.info("Drawing Figures 3 and 4 of %s from %s", job.folder.name, checkpoint.name)
    return [
        conv1_kernels(model, out / "fig3_conv1.png"),
        predictions(model, to_input, val, names, out / "fig4_predictions.png"),
        neighbours(model, to_input, val, train, names, out / "fig4_neighbours.png", max_train_images,
                   num_workers=num_workers),
    ]  # fmt: skip
