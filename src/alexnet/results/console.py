"""What train.py and eval.py print when a test ends: the error table and the worst classes."""

from __future__ import annotations

from torch import Tensor

from alexnet import metric_names

CROP_LABELS = {"centre_crop": "centre crop", "ten_crop": "10 patches"}


def format_results(results: dict[str, float]) -> str:
    """The final table: top-1/top-5 error for the centre crop and the ten patches."""
    lines = [f"{'':14}{'top-1 error':>12}{'top-5 error':>13}"]
    for crop, label in CROP_LABELS.items():
        top1 = results.get(metric_names.top_k_error("test", 1, crop=crop))
        top5 = results.get(metric_names.top_k_error("test", 5, crop=crop))
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
