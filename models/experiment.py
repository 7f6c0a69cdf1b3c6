"""The live experiment's arithmetic: per-arm metrics from simulated impressions, their mean and
t-interval over replicates, and each arm's change against the baseline, paired by replicate.

Arms of one replicate share its seed (common random numbers), so the change of an arm is taken
replicate by replicate, 100 x (arm / baseline - 1), and those ratios get the t-interval. The A/A
arm (the baseline again, with other seeds) is paired the same way by replicate index: its
intervals show how far chance alone moves a change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

# The columns of the paper's Table 1, in its order; dislike_rate: lower is better.
METRICS = ("ctr", "play_time_per_impression", "satisfaction_rate", "dislike_rate", "retention")
LOWER_IS_BETTER = frozenset({"dislike_rate"})
SUMMARY_COLUMNS = [
    "arm",
    "metric",
    "replicates",
    "mean",
    "low",
    "high",
    "change_pct",
    "change_low",
    "change_high",
]


def arm_metrics(impressions: Mapping[str, np.ndarray], retained: np.ndarray) -> dict[str, float]:
    """One arm's metrics. Rates are over recommended impressions (step >= 1: shown in a related
    list, not the video a session opened on): ctr = clicks, play_time_per_impression = seconds
    played, satisfaction_rate = likes + shares, dislike_rate = dislikes, each divided by those
    impressions (NaN without any). retention = share of `retained` users."""
    recommended = np.asarray(impressions["step"]) >= 1
    shown = int(recommended.sum())

    def per_impression(values: np.ndarray) -> float:
        return float(np.asarray(values)[recommended].sum() / shown) if shown else float("nan")

    liked = np.asarray(impressions["liked"], dtype=float)
    shared = np.asarray(impressions["shared"], dtype=float)
    retained = np.asarray(retained, dtype=bool)
    return {
        "ctr": per_impression(impressions["clicked"]),
        "play_time_per_impression": per_impression(impressions["play_time_s"]),
        "satisfaction_rate": per_impression(liked + shared),
        "dislike_rate": per_impression(impressions["disliked"]),
        "retention": float(retained.mean()) if len(retained) else float("nan"),
    }


def t_interval(values: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` and its two-sided t confidence interval; NaN
    values are left out; the interval is NaN with fewer than two values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf((1.0 + confidence) / 2.0, len(values) - 1) * stats.sem(values)
    return mean, float(mean - half), float(mean + half)


def paired_change(values: Sequence[float], baseline: Sequence[float]) -> np.ndarray:
    """Per replicate, the change against the baseline in percent: 100 x (value / baseline - 1);
    NaN where the baseline is 0 or NaN."""
    values, baseline = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if values.shape != baseline.shape:
        raise ValueError(f"paired change: {values.shape} values against {baseline.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline != 0, 100.0 * (values / baseline - 1.0), np.nan)


def summarize(
    replicates: pd.DataFrame,
    baseline: str,
    confidence: float,
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """One row per arm and metric (SUMMARY_COLUMNS): the mean over replicates with its
    t-interval, and the change against `baseline` in percent with its t-interval over the
    replicates' paired changes (NaN for the baseline itself).

    `replicates` has one row per arm and replicate: arm, replicate (the pairing key: an arm's
    replicate r is compared with the baseline's replicate r) and a column per metric. Every
    replicate of an arm must have its baseline replicate."""
    base = replicates[replicates["arm"] == baseline].set_index("replicate")
    if base.empty:
        raise ValueError(f"the baseline {baseline!r} has no replicates")
    rows = []
    for arm, frame in replicates.groupby("arm", sort=False):
        frame = frame.set_index("replicate")
        missing = frame.index.difference(base.index)
        if len(missing):
            raise ValueError(f"arm {arm!r}: replicates {list(missing)} have no baseline replicate")
        for metric in metrics:
            mean, low, high = t_interval(frame[metric], confidence)
            if arm == baseline:
                change = (float("nan"),) * 3
            else:
                paired = paired_change(frame[metric], base.loc[frame.index, metric])
                change = t_interval(paired, confidence)
            rows.append((arm, metric, len(frame), mean, low, high, *change))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def excludes_zero(low: float, high: float) -> bool:
    """Whether a change's interval lies wholly on one side of 0 (a NaN interval does not)."""
    return bool(low > 0 or high < 0)
