"""What the paper claims each ablation does to the error (``../shared/alexnet-spec.md``), and a measured Δ's verdict."""

from __future__ import annotations

from dataclasses import dataclass

from alexnet.results.statistics import Estimate


@dataclass(frozen=True)
class Claim:
    """What the paper says an ablation does to the error (alexnet-spec.md), in percentage points.

    ``sign``: the direction of Δ (ablation minus baseline) it implies: +1 the ablation errs more,
    0 no claim about the test error.
    """

    text: str
    top1: float | None = None
    top5: float | None = None
    sign: int = 0
    delta_text: str | None = None  # the claimed Δ in words, where top-1 / top-5 do not say it

    def delta(self) -> str:
        if self.delta_text is not None:
            return self.delta_text
        if self.top1 is None:
            return "+" if self.sign > 0 else "-"
        return f"{self.top1:+.1f} / {self.top5:+.1f}" if self.top5 is not None else f"over {self.top1:+.1f}"


CLAIMS = {
    "ablate_lrn": Claim("Δ +1.4 / +1.2 without LRN (§3.3)", 1.4, 1.2, sign=1),
    "ablate_overlap": Claim("Δ +0.4 / +0.3 without overlap (§3.4)", 0.4, 0.3, sign=1),
    "ablate_towers": Claim("Δ +1.7 / +1.2 with one tower (§3.2)", 1.7, 1.2, sign=1),
    "ablate_lighting": Claim("Δ over +1 top-1 without PCA lighting (§4.1)", 1.0, sign=1),
    "ablate_dropout": Claim("more overfitting without dropout: higher test error (§4.2)", sign=1),
    "ablate_relu": Claim("tanh reaches 25% training error 6x later (Figure 1): higher error at equal epochs", sign=1),
    "ablate_groups": Claim("(not measured in the paper, §3.2)"),
    "cifar_fig1": Claim("ReLU reaches 25% training error 6x sooner than tanh (§3.1, Figure 1): see Figure 1 below"),
    "cifar_lrn": Claim("11% CIFAR-10 test error with response normalization (§3.3); the reference of cifar_ablate_lrn"),
    "cifar_ablate_lrn": Claim("13% CIFAR-10 test error without it (§3.3)", 2.0, sign=1, delta_text="+2 (13% vs 11%)"),
    "paper": Claim("40.7 / 18.2 on ILSVRC-2012 val (Table 2)"),
    "baseline": Claim("(the reference for Δ)"),
}


def agreement(delta: Estimate | None, claim: Claim | None) -> str:
    """Whether a measured Δ agrees with the paper's claim in sign, and whether its interval excludes 0."""
    if claim is None or not claim.sign or delta is None:
        return "-"
    agrees = delta.mean * claim.sign > 0
    sign = "✓ agrees in sign" if agrees else "✗ opposite sign"
    if delta.excludes_zero is None:
        return f"{sign}; no interval from one seed"
    if delta.low == delta.high:  # every seed gave the same Δ: a t interval says nothing
        return f"{sign}; the same Δ for every seed (no spread to judge noise by)"
    return f"{sign}; {'beyond noise (interval excludes 0)' if delta.excludes_zero else 'within noise'}"
