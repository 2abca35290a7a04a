"""The statistics of a sweep's seeds: the mean with its 95% interval (Student's t), and Δ, paired or Welch's.

Tested on hand-made numbers against exact values (tests/results/test_statistics.py).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def t_975(df: float) -> float:
    """Student's t 0.975 quantile (a two-sided 95% interval) for ``df`` degrees of freedom, Welch's fractional ones too."""
    from scipy import stats  # here: every train.py process imports the report (its Hydra callback)

    if not df >= 1:  # NaN too
        raise ValueError(f"a t interval needs at least 1 degree of freedom, got {df}")
    return float(stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its spread; ``low``/``high`` bound the 95% interval (None from one value)."""

    mean: float
    n: int
    std: float | None = None  # over seeds; for an unpaired Δ (Welch), the standard error of the difference
    low: float | None = None
    high: float | None = None
    paired: bool | None = None  # for a Δ: seed by seed (True) or Welch (False)

    @property
    def excludes_zero(self) -> bool | None:
        return None if self.low is None or self.high is None else self.low > 0 or self.high < 0

    def interval(self) -> str:
        return "-" if self.low is None else f"[{self.low:+.2f}, {self.high:+.2f}]"


def estimate(values: list[float]) -> Estimate | None:
    """Mean, sample standard deviation and the t interval of the mean."""
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, 1)
    std = statistics.stdev(values)
    half = t_975(len(values) - 1) * std / math.sqrt(len(values))
    return Estimate(mean, len(values), std, mean - half, mean + half)


def difference(ablation: dict[str, float], baseline: dict[str, float]) -> Estimate | None:
    """``ablation - baseline`` over seeds (seed -> value): paired when both hold the same seeds, else Welch."""
    if not ablation or not baseline:
        return None
    if set(ablation) == set(baseline) and len(ablation) > 1:
        paired = estimate([ablation[seed] - baseline[seed] for seed in ablation])
        return Estimate(paired.mean, paired.n, paired.std, paired.low, paired.high, paired=True)
    a, b = list(ablation.values()), list(baseline.values())
    mean = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(mean, min(len(a), len(b)), paired=False)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(mean, min(len(a), len(b)), 0.0, mean, mean, paired=False)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = t_975(df) * se
    return Estimate(mean, min(len(a), len(b)), se, mean - half, mean + half, paired=False)


def ratio(numerator: dict[str, float], denominator: dict[str, float]) -> Estimate | None:
    """``numerator / denominator`` seed by seed (the seeds both have), pooled on the log scale.

    A speed-up is a ratio: its mean is the geometric mean of the seeds' ratios, and its 95% interval the t
    interval of their logarithms, taken back (so it never reaches 0 and a 2x and a 0.5x seed cancel).
    """
    seeds = sorted(set(numerator) & set(denominator))
    logs = [math.log(numerator[s] / denominator[s]) for s in seeds if numerator[s] > 0 and denominator[s] > 0]
    pooled = estimate(logs)
    if pooled is None:
        return None
    if pooled.low is None:
        return Estimate(math.exp(pooled.mean), pooled.n, paired=True)
    return Estimate(
        math.exp(pooled.mean), pooled.n, pooled.std, math.exp(pooled.low), math.exp(pooled.high), paired=True
    )
