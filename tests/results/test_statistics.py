"""The statistics of seeds and the paper's claims, on hand-made numbers: intervals, paired and Welch's Δ, verdicts."""

import math
import statistics

import pytest

from alexnet.results.claims import CLAIMS, agreement
from alexnet.results.statistics import Estimate, difference, estimate, t_975


def test_t_quantiles_are_the_tables():
    assert [t_975(df) for df in (1, 2, 30, 1e9)] == pytest.approx(
        [12.706, 4.303, 2.042, 1.960], abs=5e-4
    )  # printed tables'
    assert 2.021 > t_975(50) > 2.000  # between df 40 and 60
    assert t_975(33) == pytest.approx(2.0345, abs=2e-4)  # exact: 2.03452
    with pytest.raises(ValueError):
        t_975(0.5)


def test_an_estimate_is_the_mean_and_its_t_interval():
    two = estimate([40.0, 42.0])
    assert (two.mean, two.n) == (41.0, 2) and two.std == pytest.approx(2**0.5)
    assert (two.low, two.high) == pytest.approx((41 - 12.7062, 41 + 12.7062))  # t(1) * sqrt(2) / sqrt(2)
    one = estimate([40.0])
    assert one.mean == 40.0 and one.low is None and one.excludes_zero is None
    assert estimate([]) is None


def test_a_delta_is_paired_seed_by_seed_when_the_seeds_match():
    delta = difference({"1": 43.0, "2": 44.0, "3": 46.0}, {"1": 40.0, "2": 42.0, "3": 42.0})
    assert delta.paired and delta.mean == pytest.approx(3.0)  # differences 3, 2, 4: sd 1
    assert (delta.low, delta.high) == pytest.approx((3 - 4.302653 / 3**0.5, 3 + 4.302653 / 3**0.5))
    assert delta.excludes_zero
    # Unpaired, the same numbers' spread between seeds swamps the difference.
    welch = difference({"1": 43.0, "2": 44.0, "3": 46.0}, {"4": 40.0, "5": 42.0, "6": 42.0})
    assert welch.paired is False and welch.mean == pytest.approx(3.0) and not welch.excludes_zero


def test_welch_interval_on_hand_made_numbers():
    delta = difference({"1": 43.0, "2": 45.0}, {"3": 40.0, "4": 41.0, "5": 42.0})
    se = (2 / 2 + 1 / 3) ** 0.5  # variances 2 and 1 over 2 and 3 seeds
    df = (4 / 3) ** 2 / (1**2 / 1 + (1 / 3) ** 2 / 2)  # Welch-Satterthwaite: 1.68
    assert delta.mean == pytest.approx(3.0) and delta.std == pytest.approx(se)
    assert delta.high - delta.mean == pytest.approx(t_975(df) * se)
    assert 1 < df < 2 and t_975(df) == pytest.approx(5.1762, abs=1e-4)  # t(0.975, 1.684)


def test_agreement_marks():
    lrn = CLAIMS["ablate_lrn"]  # the paper: +1.4 without LRN
    assert agreement(Estimate(1.0, 3, 0.1, 0.5, 1.5), lrn) == "✓ agrees in sign; beyond noise (interval excludes 0)"
    assert agreement(Estimate(1.0, 3, 1.0, -0.5, 2.5), lrn) == "✓ agrees in sign; within noise"
    assert agreement(Estimate(-1.0, 3, 0.1, -1.5, -0.5), lrn).startswith("✗ opposite sign; beyond noise")
    assert agreement(Estimate(-1.0, 1), lrn) == "✗ opposite sign; no interval from one seed"
    assert agreement(Estimate(1.0, 3, 0.1, 0.5, 1.5), CLAIMS["ablate_groups"]) == "-"  # the paper claims nothing


def test_the_same_delta_for_every_seed_is_not_called_beyond_noise():
    same = difference({"1": 42.0, "2": 43.0}, {"1": 40.0, "2": 41.0})
    assert same.paired and same.low == same.high == pytest.approx(2.0)
    assert (
        agreement(same, CLAIMS["ablate_lrn"])
        == "✓ agrees in sign; the same Δ for every seed (no spread to judge noise by)"
    )


def test_a_speed_up_pools_on_the_log_scale():
    from alexnet.results.statistics import ratio

    assert ratio({"1": 4.0, "2": 2.0}, {"1": 1.0, "2": 2.0}).mean == pytest.approx(2.0)  # 4x and 1x: 2x, not 2.5x
    value = ratio({"1": 2.0, "2": 1.0, "3": 6.0}, {"1": 1.0, "2": 2.0, "3": 1.0})  # 2x, 0.5x, 6x
    assert value.mean == pytest.approx(6 ** (1 / 3)) and value.n == 3 and value.paired
    half = t_975(2) * statistics.stdev([math.log(2), math.log(0.5), math.log(6)]) / 3**0.5
    assert value.low == pytest.approx(value.mean / math.exp(half)) and value.high == pytest.approx(
        value.mean * math.exp(half)
    )
    assert ratio({"1": 3.0}, {"2": 1.0}) is None  # no seed in common
    assert ratio({"1": 3.0}, {"1": 1.0}).low is None  # one seed: no interval
