"""The live experiment's arithmetic on tiny hand-computed arrays."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.experiment import (
    METRICS,
    SUMMARY_COLUMNS,
    arm_metrics,
    excludes_zero,
    paired_change,
    summarize,
    t_interval,
)

T_975_2 = 4.302652729911275  # t quantile 0.975 with 2 degrees of freedom
T_975_1 = 12.706204736174705  # ... with 1 degree of freedom


def test_arm_metrics_count_only_recommended_impressions():
    impressions = {
        "step": np.array([0, 1, 1, 1, 2]),
        "clicked": np.array([1, 1, 0, 1, 1]),
        "play_time_s": np.array([100.0, 30.0, 0.0, 10.0, 20.0]),
        "liked": np.array([1, 1, 0, 0, 0]),
        "shared": np.array([1, 1, 0, 0, 1]),
        "disliked": np.array([0, 0, 0, 1, 0]),
    }
    metrics = arm_metrics(impressions, np.array([True, False, True, True]))
    assert list(metrics) == list(METRICS)
    assert metrics["ctr"] == pytest.approx(3 / 4)
    assert metrics["play_time_per_impression"] == pytest.approx(60 / 4)
    assert metrics["satisfaction_rate"] == pytest.approx(3 / 4)  # 1 like + 2 shares
    assert metrics["dislike_rate"] == pytest.approx(1 / 4)
    assert metrics["retention"] == pytest.approx(3 / 4)


def test_arm_metrics_without_recommendations_are_nan():
    impressions = {name: np.array([1]) for name in ("clicked", "liked", "shared", "disliked")}
    metrics = arm_metrics(
        {**impressions, "step": np.array([0]), "play_time_s": np.array([5.0])}, [1]
    )
    assert math.isnan(metrics["ctr"]) and math.isnan(metrics["dislike_rate"])
    assert metrics["retention"] == 1.0


def test_t_interval_by_hand():
    # mean 2, sample sd 1, n 3: half width = t(0.975, 2) x 1 / sqrt(3)
    mean, low, high = t_interval([1.0, 2.0, 3.0], 0.95)
    half = T_975_2 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    # NaN left out: mean 3, sd sqrt(2), n 2: half width = t(0.975, 1) x sqrt(2) / sqrt(2)
    assert t_interval([2.0, np.nan, 4.0], 0.95) == pytest.approx((3.0, 3 - T_975_1, 3 + T_975_1))
    mean, low, high = t_interval([5.0], 0.95)
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)


def test_paired_change_in_percent():
    change = paired_change([1.1, 0.5, 3.0], [1.0, 1.0, 0.0])
    assert change[:2] == pytest.approx([10.0, -50.0])
    assert math.isnan(change[2])
    with pytest.raises(ValueError):
        paired_change([1.0], [1.0, 2.0])


def test_summarize_pairs_replicates_with_the_baseline():
    replicates = pd.DataFrame(
        {
            "arm": ["base"] * 3 + ["new"] * 3 + ["aa"] * 2,
            "replicate": [0, 1, 2, 2, 0, 1, 0, 1],  # pairing by replicate, not by row order
            "ctr": [0.10, 0.20, 0.40, 0.44, 0.11, 0.24, 0.10, 0.22],
        }
    )
    summary = summarize(replicates, "base", 0.95, metrics=["ctr"]).set_index("arm")
    assert list(summary.reset_index().columns) == SUMMARY_COLUMNS
    base, new, aa = summary.loc["base"], summary.loc["new"], summary.loc["aa"]
    assert base["mean"] == pytest.approx(0.7 / 3) and math.isnan(base["change_pct"])
    assert base["replicates"] == 3
    # new vs base, replicate by replicate: +10%, +20%, +10% -> mean 40/3, sd 10/sqrt(3)
    half = T_975_2 * (10 / math.sqrt(3)) / math.sqrt(3)
    assert new["change_pct"] == pytest.approx(40 / 3)
    assert (new["change_low"], new["change_high"]) == pytest.approx((40 / 3 - half, 40 / 3 + half))
    # aa: 0% and +10% against base replicates 0 and 1: mean 5, sd sqrt(50), n 2
    assert aa["change_pct"] == pytest.approx(5.0)
    assert aa["change_high"] - aa["change_pct"] == pytest.approx(T_975_1 * math.sqrt(50 / 2))


def test_summarize_needs_the_baseline_for_every_replicate():
    replicates = pd.DataFrame(
        {"arm": ["base", "new", "new"], "replicate": [0, 0, 1], "ctr": [0.1, 0.1, 0.2]}
    )
    with pytest.raises(ValueError, match="no baseline replicate"):
        summarize(replicates, "base", 0.95, metrics=["ctr"])
    with pytest.raises(ValueError, match="no replicates"):
        summarize(replicates, "other", 0.95, metrics=["ctr"])


def test_excludes_zero():
    assert excludes_zero(0.5, 2.0) and excludes_zero(-3.0, -0.1)
    assert not excludes_zero(-1.0, 1.0)
    assert not excludes_zero(float("nan"), float("nan"))
