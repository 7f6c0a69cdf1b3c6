"""Objective weights w_k of the merge. The paper's: a logistic regression of each user's retention
(any event within some days after a cut-off) on the user's mean coordinating-network outputs,
normalized. The list's own: a logistic regression of held-out next-video transitions on the
pair's calibrated per-objective scores, with coefficients kept >= 0 on sign_k * s^k.

A weight whose sign contradicts its objective's sign (more dislike predicting more retention) is
clipped to 0 and reported; with nothing left to learn from, the weights fall back to equal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

log = logging.getLogger(__name__)


def retention_labels(events: pd.DataFrame, cutoff: pd.Timestamp, days: float) -> pd.Series:
    """Per user seen at or before `cutoff` (index user_id, name `retained`): True if the user has
    any event in (cutoff, cutoff + days]."""
    _require(events, ["user_id", "ts"], "events")
    ts = events["ts"]
    before = events.loc[ts <= cutoff, "user_id"].unique()
    window = (ts > cutoff) & (ts <= cutoff + pd.Timedelta(days=days))
    returned = events.loc[window, "user_id"].unique()
    users = pd.Index(np.sort(before), name="user_id")
    return pd.Series(users.isin(returned), index=users, name="retained")


def retention_window(events: pd.DataFrame, days: float) -> tuple[pd.Timestamp, float]:
    """The cut-off and the retention window in days: the last event time minus `days`, so that
    every user is observed for `days` after it. A log shorter than twice `days` (KuaiRand's six
    days against a 7-day window) gets half its span instead, with a warning: users must be seen
    both before and after the cut-off."""
    _require(events, ["ts"], "events")
    if events.empty:
        raise ValueError("retention_window: no events")
    last = pd.Timestamp(events["ts"].max())
    span = (last - pd.Timestamp(events["ts"].min())) / pd.Timedelta(days=1)
    window = float(days)
    if span < 2 * window:
        window = span / 2
        log.warning(
            "objective weights: the log spans %.1f days, less than twice the %s-day retention "
            "window: retention is measured over the last %.1f days instead",
            span,
            days,
            window,
        )
    return last - pd.Timedelta(days=window), window


def user_mean_outputs(
    outputs: pd.DataFrame, names: Sequence[str], cutoff: pd.Timestamp
) -> pd.DataFrame:
    """Mean p_<name> per user over the user's events at or before `cutoff` (index user_id, one
    column per objective name)."""
    columns = [f"p_{name}" for name in names]
    _require(outputs, ["user_id", "ts", *columns], "outputs")
    before = outputs.loc[outputs["ts"] <= cutoff, ["user_id", *columns]]
    means = before.groupby("user_id", sort=True)[columns].mean()
    return means.rename(columns=dict(zip(columns, names, strict=True)))


@dataclass(frozen=True)
class ObjectiveWeights:
    weights: dict[str, float]  # w_k >= 0, summing to 1
    coefficients: dict[str, float]  # standardized logistic-regression coefficients c_k
    clipped: tuple[str, ...]  # objectives whose coefficient contradicted their sign
    intercept: float
    n_users: int  # retention: users; transitions: candidate pairs learnt from
    retained_share: float  # retention: share retained; transitions: share of positive pairs
    method: str = "retention"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["clipped"] = list(self.clipped)
        return data


def fit_objective_weights(
    features: pd.DataFrame,
    retained: pd.Series,
    signs: Mapping[str, int],
    seed: int,
) -> ObjectiveWeights:
    """w_k = max(sign_k * c_k, 0), normalized, with c_k the coefficient of the standardized
    column k in a logistic regression of `retained` on `features` (one row per user)."""
    names = [str(name) for name in features.columns]
    x, y = _aligned(features, retained, signs)
    sign = np.array([signs[name] for name in names], dtype=np.float64)
    n_users, retained_share = len(y), float(y.mean())

    # max == min, not std == 0: the std of a constant column of 0.3s is not exactly 0.
    varying = x.max(axis=0) > x.min(axis=0)
    for name in np.array(names)[~varying]:
        log.warning("objective weights: %s's mean output does not vary over users: weight 0", name)
    coefficients = np.zeros(len(names))
    intercept = 0.0
    if len(np.unique(y)) < 2:
        reason = "every user retained" if y.all() else "no user retained"
        return _equal(names, coefficients, (), intercept, n_users, retained_share, reason)
    if not varying.any():
        reason = "no objective's mean output varies over users"
        return _equal(names, coefficients, (), intercept, n_users, retained_share, reason)

    kept = x[:, varying]
    standardized = (kept - kept.mean(axis=0)) / kept.std(axis=0)
    model = LogisticRegression(solver="lbfgs", random_state=seed).fit(standardized, y)
    coefficients[varying] = model.coef_[0]
    intercept = float(model.intercept_[0])

    agreeing = sign * coefficients
    clipped = tuple(name for name, value in zip(names, agreeing, strict=True) if value < 0)
    for name in clipped:
        log.warning(
            "objective weights: %s's coefficient %.4f contradicts its sign %+d: clipped to 0",
            name,
            coefficients[names.index(name)],
            signs[name],
        )
    raw = np.maximum(agreeing, 0.0)
    if raw.sum() <= 0:
        reason = "every learned weight is 0 or contradicts its objective's sign"
        return _equal(names, coefficients, clipped, intercept, n_users, retained_share, reason)
    return ObjectiveWeights(
        weights=_floats(names, raw / raw.sum()),
        coefficients=_floats(names, coefficients),
        clipped=clipped,
        intercept=intercept,
        n_users=n_users,
        retained_share=retained_share,
    )


def fit_transition_weights(
    scores: Mapping[str, np.ndarray],
    label: np.ndarray,
    signs: Mapping[str, int],
    groups: np.ndarray | None = None,
    l2: float = 1.0,
) -> ObjectiveWeights:
    """w_k from a logistic regression of `label` (the candidate pair was a held-out transition)
    on x_k = sign_k * s^k, standardized, with every coefficient c_k >= 0 (the dislike side can
    only subtract). With `groups` (the source of each pair) it is a conditional logit: a softmax
    over each source's candidates, which learns how to order a list rather than how likely a
    pair is overall. w_k = c_k / std_k, normalized: sum_k sign_k w_k s^k then orders pairs as
    the regression's logit does. Equal weights when nothing can be learned."""
    names = [str(name) for name in scores]
    y = np.asarray(label).astype(np.float64)
    x = np.column_stack(
        [signs[name] * np.asarray(scores[name], dtype=np.float64) for name in names]
    )
    n, share = len(y), float(y.mean()) if len(y) else 0.0
    zeros = np.zeros(len(names))
    if n == 0 or y.min() == y.max():
        return _equal(
            names,
            zeros,
            (),
            0.0,
            n,
            share,
            "no transition or no negative to learn from",
            "transitions",
        )
    std = x.std(axis=0)
    varying = std > 0
    if not varying.any():
        return _equal(names, zeros, (), 0.0, n, share, "no objective's score varies", "transitions")
    z = (x[:, varying] - x[:, varying].mean(axis=0)) / std[varying]

    if groups is not None:
        codes = pd.factorize(np.asarray(groups))[0]
        positives = np.bincount(codes, y)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            logit = z @ theta[1:]
            top = np.full(codes.max() + 1, -np.inf)
            np.maximum.at(top, codes, logit)
            e = np.exp(logit - top[codes])
            total = np.bincount(codes, e)
            log_norm = np.log(total)[codes] + top[codes]
            p = e / total[codes]
            value = -(y * (logit - log_norm)).sum() / n + l2 * theta[1:] @ theta[1:] / (2 * n)
            gradient = z.T @ (p * positives[codes] - y) + l2 * theta[1:]
            return float(value), np.r_[0.0, gradient / n]

    else:

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            logit = z @ theta[1:] + theta[0]
            p = 1.0 / (1.0 + np.exp(-logit))
            value = np.sum(np.logaddexp(0.0, logit) - y * logit) / n
            value += l2 * theta[1:] @ theta[1:] / (2 * n)
            gradient = np.r_[np.sum(p - y), z.T @ (p - y) + l2 * theta[1:]] / n
            return float(value), gradient

    bounds = [(None, None)] + [(0.0, None)] * int(varying.sum())
    start = np.zeros(int(varying.sum()) + 1)
    fitted = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds).x
    coefficients = zeros.copy()
    coefficients[varying] = fitted[1:]
    clipped = tuple(
        name for name, c, v in zip(names, coefficients, varying, strict=True) if v and c <= 0
    )
    raw = np.where(varying, coefficients / np.where(varying, std, 1.0), 0.0)
    if raw.sum() <= 0:
        return _equal(
            names,
            coefficients,
            clipped,
            float(fitted[0]),
            n,
            share,
            "every transition coefficient is 0",
            "transitions",
        )
    return ObjectiveWeights(
        weights=_floats(names, raw / raw.sum()),
        coefficients=_floats(names, coefficients),
        clipped=clipped,
        intercept=float(fitted[0]),
        n_users=n,
        retained_share=share,
        method="transitions",
    )


def equal_weights(names: Sequence[str]) -> ObjectiveWeights:
    """Every objective the same weight (the "no learned weights" ablation)."""
    names = list(names)
    return ObjectiveWeights(
        _floats(names, np.full(len(names), 1.0 / len(names))),
        _floats(names, np.zeros(len(names))),
        (),
        0.0,
        0,
        0.0,
        method="equal",
    )


def _aligned(
    features: pd.DataFrame, retained: pd.Series, signs: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    if features.empty or features.shape[1] == 0:
        raise ValueError("objective weights: no users or no objective columns in the features")
    if not features.index.is_unique or not retained.index.is_unique:
        raise ValueError("objective weights: user ids must be unique in features and labels")
    missing, extra = (
        features.index.difference(retained.index),
        retained.index.difference(features.index),
    )
    if len(missing) or len(extra):
        raise ValueError(
            f"objective weights: features and retention labels do not align: {len(missing)} "
            f"user(s) without a label, {len(extra)} label(s) without features"
        )
    unsigned = [name for name in features.columns if signs.get(name) not in (1, -1)]
    if unsigned:
        raise ValueError(f"objective weights: no sign of +1 or -1 for {unsigned}")
    x = features.to_numpy(dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError("objective weights: the features contain NaN")
    labels = retained.reindex(features.index)
    if labels.isna().any():
        raise ValueError("objective weights: the retention labels contain missing values")
    return x, labels.to_numpy().astype(bool)


def _equal(
    names: list[str],
    coefficients: np.ndarray,
    clipped: tuple[str, ...],
    intercept: float,
    n_users: int,
    retained_share: float,
    reason: str,
    method: str = "retention",
) -> ObjectiveWeights:
    log.warning("objective weights (%s): equal weights, as %s", method, reason)
    return ObjectiveWeights(
        weights=_floats(names, np.full(len(names), 1.0 / len(names))),
        coefficients=_floats(names, coefficients),
        clipped=clipped,
        intercept=intercept,
        n_users=n_users,
        retained_share=retained_share,
        method=method,
    )


def _floats(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in zip(names, values, strict=True)}


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")
