"""Comparable similarities before fusion: per objective and model, the raw cosine of a candidate
pair becomes the probability that the pair is a positive pair of that objective (Platt scaling).

Raw ALS and two-tower cosines live on different scales (two-tower cosines of videos with the same
attributes approach 1), so their max is only meaningful after each is mapped to one meaning. The
map is a logistic regression of "the held-out training events hold (source -> candidate) as a
positive of k" on the cosine alone, increasing in it by construction (a side whose cosine does
not help is left out, never inverted): s^k then carries what the model knows, and the weighting adds
the pair's own evidence beside it (models/fusion.py). Where a side has no vector the other side
alone counts; where neither has, the prior model (the pair's content similarity and co-click
evidence, the candidate's positives of k and its events in the fitting events, log1p) gives the
score, so a list never falls back to a constant that ties it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from models.vectors import ItemVectors

log = logging.getLogger(__name__)

PAIR = ("source_video_id", "candidate_video_id")
SIDES = ("als", "two_tower")
# Optional columns of the pairs: co-click Jaccard in training, and log1p of the co-click count.
COOCCURRENCE, COCLICKS = "cooccurrence", "coclicks"


@dataclass(frozen=True)
class Platt:
    """p = sigmoid(intercept + sum_f coef_f * (x_f - mean_f) / scale_f) over named features."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        z = np.full(len(next(iter(columns.values()))), self.intercept, dtype=np.float64)
        for name, c, m, s in zip(self.features, self.coef, self.mean, self.scale, strict=True):
            z += c * (np.asarray(columns[name], dtype=np.float64) - m) / s
        return 1.0 / (1.0 + np.exp(-z))

    def coefficient(self, name: str) -> float:
        return self.coef[self.features.index(name)] if name in self.features else 0.0

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "mean": list(self.mean),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Platt:
        return cls(
            tuple(data["features"]),
            tuple(float(v) for v in data["coef"]),
            float(data["intercept"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["scale"]),
        )


def fit_platt(
    columns: Mapping[str, np.ndarray], label: np.ndarray, monotone: Sequence[str] = ()
) -> Platt:
    """Logistic regression of `label` on the standardized columns; a column of `monotone` whose
    coefficient comes out <= 0 is dropped and the rest refit, so p never falls as it grows."""
    y = np.asarray(label).astype(bool)
    if y.all() or not y.any():
        raise ValueError("calibration: the labels need both positives and negatives")
    names = [name for name in columns if np.ptp(np.asarray(columns[name], dtype=float)) > 0]
    while True:
        x = (
            np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in names])
            if names
            else (np.zeros((len(y), 0)))
        )
        mean = x.mean(axis=0) if names else np.zeros(0)
        scale = x.std(axis=0) if names else np.zeros(0)
        if names:
            model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=500)
            model.fit((x - mean) / scale, y)
            coef, intercept = model.coef_[0], float(model.intercept_[0])
        else:
            rate = float(y.mean())
            coef, intercept = np.zeros(0), float(np.log(rate / (1 - rate)))
        falling = [n for n, c in zip(names, coef, strict=True) if n in monotone and c <= 0]
        if not falling:
            return Platt(
                tuple(names),
                tuple(float(c) for c in coef),
                intercept,
                tuple(float(m) for m in mean),
                tuple(float(s) for s in scale),
            )
        names = [n for n in names if n not in falling]


@dataclass(frozen=True)
class ObjectiveCalibration:
    """One objective's maps: per side (als, two_tower) the cosine model, and the prior model for
    pairs no side knows. `use_two_tower` False: the two-tower side is left out of the fusion (it
    added nothing over ALS on validation)."""

    sides: dict[str, Platt]
    prior: Platt
    use_two_tower: bool = True
    auc: dict[str, float] = field(default_factory=dict)  # validation AUC, for the log

    def to_dict(self) -> dict:
        return {
            "sides": {side: platt.to_dict() for side, platt in self.sides.items()},
            "prior": self.prior.to_dict(),
            "use_two_tower": self.use_two_tower,
            "auc": dict(self.auc),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ObjectiveCalibration:
        return cls(
            {side: Platt.from_dict(p) for side, p in data["sides"].items()},
            Platt.from_dict(data["prior"]),
            bool(data["use_two_tower"]),
            {k: float(v) for k, v in data.get("auc", {}).items()},
        )


def pair_columns(pairs: pd.DataFrame, priors: pd.DataFrame, name: str) -> dict[str, np.ndarray]:
    """The features every map shares: the pair's content similarity and co-click Jaccard (its
    `cooccurrence` column, when the pairs carry one), and the candidate's prior of objective
    `name` and exposure (log1p of its positives and of its events; 0 for a video without
    training events)."""
    candidates = pairs["candidate_video_id"].astype(str)

    def per_candidate(column: str) -> np.ndarray:
        if column not in priors:
            return np.zeros(len(pairs))
        values = candidates.map(priors[column]).fillna(0.0).to_numpy(dtype=np.float64)
        return np.log1p(values)

    columns = {
        "content": pairs["content_similarity"].to_numpy(dtype=np.float64),
        "prior": per_candidate(f"positives_{name}"),
        "exposure": per_candidate("events"),
    }
    for column in (COOCCURRENCE, COCLICKS):
        if column in pairs:
            columns[column] = pairs[column].to_numpy(dtype=np.float64)
    return columns


def side_cosines(
    pairs: pd.DataFrame, vectors: tuple[ItemVectors | None, ItemVectors | None]
) -> dict[str, np.ndarray]:
    """Raw cosine of each pair per side; NaN where the side has no vector (or no model)."""
    sources = pairs["source_video_id"].to_numpy().astype(str)
    candidates = pairs["candidate_video_id"].to_numpy().astype(str)
    return {
        side: np.full(len(pairs), np.nan)
        if model is None
        else model.pair_cosine(sources, candidates)
        for side, model in zip(SIDES, vectors, strict=True)
    }


def fit_objective(
    pairs: pd.DataFrame,
    label: np.ndarray,
    cosines: Mapping[str, np.ndarray],
    shared: Mapping[str, np.ndarray],
    min_positives: int,
) -> ObjectiveCalibration | None:
    """Fit one objective's maps on held-out candidate pairs (`label`: the pair is a held-out
    positive): each side's on its cosine alone, the prior model on the `shared` columns. None
    when there are fewer than `min_positives` positive pairs to learn from."""
    y = np.asarray(label).astype(bool)
    if y.sum() < min_positives or y.all():
        return None
    prior = fit_platt(shared, y)
    sides = {}
    for side, cosine in cosines.items():
        known = np.isfinite(cosine)
        if y[known].sum() < min_positives or y[known].all():
            continue
        platt = fit_platt({"cosine": cosine[known]}, y[known], monotone=("cosine",))
        # A side whose cosine does not raise the chance maps every pair it knows to one
        # constant: counted, it would hide the prior model's ranking under a flat floor.
        if "cosine" in platt.features:
            sides[side] = platt
    return ObjectiveCalibration(sides, prior)


def objective_score(
    calibration: ObjectiveCalibration | None,
    cosines: Mapping[str, np.ndarray],
    shared: Mapping[str, np.ndarray],
    use_two_tower: bool | None = None,
) -> np.ndarray:
    """s^k per pair: the max over the sides of their calibrated probabilities (a side without a
    vector for the pair does not count); the prior model where no side counts; 0 without any
    calibration (too few positives to learn anything)."""
    n = len(next(iter(shared.values())))
    if calibration is None:
        return np.zeros(n)
    two_tower = calibration.use_two_tower if use_two_tower is None else use_two_tower
    best = np.full(n, np.nan)
    for side, platt in calibration.sides.items():
        if side == "two_tower" and not two_tower:
            continue
        cosine = cosines[side]
        known = np.isfinite(cosine)
        if not known.any():
            continue
        p = np.full(n, np.nan)
        p[known] = platt.predict(
            {"cosine": cosine[known], **{k: v[known] for k, v in shared.items()}}
        )
        best = np.fmax(best, p)
    missing = np.isnan(best)
    if missing.any():
        best[missing] = calibration.prior.predict({k: v[missing] for k, v in shared.items()})
    return best
