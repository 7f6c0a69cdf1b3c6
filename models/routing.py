"""The coordinating network's bookkeeping without the network: which columns are inputs, the
objectives' labels, the folds of the cross-fitting and the routing of positives with p_k > t.

No TensorFlow here: the steps that only read a fit's outputs (routing, reports) import this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from models.metrics import roc_auc
from models.objectives import LABEL_SOURCES, LABELS, positives
from models.params import CoordinatingParams

# Columns a label is computed from: none of them may ever be an input.
FORBIDDEN_FEATURES = LABEL_SOURCES

# (objective name, label) pairs, e.g. ("play_time", "watched_half").
Objectives = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class CoordinatingInputs:
    """Which columns of `events` are features; `n_columns` is the width of the video profile."""

    user_categorical: Sequence[str]
    user_numeric: Sequence[str]
    context_numeric: Sequence[str]
    n_columns: int

    def __post_init__(self) -> None:
        named = {*self.user_categorical, *self.user_numeric, *self.context_numeric}
        leaking = sorted(named & FORBIDDEN_FEATURES)
        if leaking:
            raise ValueError(f"coordinating network: {leaking} are labels, never features")
        if not self.numeric:
            raise ValueError("coordinating network: at least one numeric feature is needed")

    @property
    def numeric(self) -> list[str]:
        return [*self.user_numeric, *self.context_numeric]


def objective_labels(events: pd.DataFrame, objectives: Objectives) -> pd.DataFrame:
    """int8 0/1 per objective name (`models.objectives.positives` of its label)."""
    unknown = sorted({label for _, label in objectives} - set(LABELS))
    if unknown:
        raise ValueError(f"unknown objective labels {unknown}; known: {list(LABELS)}")
    derived = {label: positives(events, label) for label in {label for _, label in objectives}}
    return pd.DataFrame(
        {name: derived[label].astype(np.int8) for name, label in objectives}, index=events.index
    )


def fold_assignment(n_rows: int, folds: int, seed: int) -> np.ndarray:
    """The fold each row is held out in: KFold(folds, shuffled with `seed`)."""
    assignment = np.empty(n_rows, dtype=np.int16)
    splits = KFold(folds, shuffle=True, random_state=seed).split(np.zeros((n_rows, 1)))
    for fold, (_, held_out) in enumerate(splits):
        assignment[held_out] = fold
    return assignment


def combine_folds(
    events: pd.DataFrame,
    objectives: Objectives,
    params: CoordinatingParams,
    per_fold: Sequence[np.ndarray],
) -> pd.DataFrame:
    """p_<objective> per event from the fold that held it out (`fold_predictions` of each fold,
    in fold order), plus `fold`."""
    assignment = fold_assignment(len(events), params.folds, params.seed)
    p = np.full((len(events), len(objectives)), np.nan)
    for fold, predicted in enumerate(per_fold):
        p[assignment == fold] = predicted
    columns = [f"p_{name}" for name, _ in objectives]
    return pd.DataFrame(p, index=events.index, columns=columns).assign(fold=assignment)


def route(
    labels: pd.DataFrame, predictions: pd.DataFrame, objectives: Objectives, threshold: float
) -> pd.DataFrame:
    """routed_<objective>: a positive of the objective whose p is above `threshold`."""
    return pd.DataFrame(
        {
            f"routed_{name}": (labels[name].to_numpy() == 1)
            & (predictions[f"p_{name}"].to_numpy() > threshold)
            for name, _ in objectives
        },
        index=labels.index,
    )


def routing_report(
    labels: pd.DataFrame, routed: pd.DataFrame, objectives: Objectives
) -> pd.DataFrame:
    """Per objective: positives, routed positives, and the share routed."""
    names = [name for name, _ in objectives]
    report = pd.DataFrame(
        {
            "positives": [int(labels[name].sum()) for name in names],
            "routed": [int(routed[f"routed_{name}"].sum()) for name in names],
        },
        index=pd.Index(names, name="objective"),
    )
    return report.assign(routed_share=report["routed"] / report["positives"].replace(0, np.nan))


def oof_auc(labels: pd.DataFrame, predictions: pd.DataFrame) -> pd.Series:
    """ROC AUC of p_<objective> against each label column; NaN where a label has one class."""
    auc = {name: roc_auc(labels[name], predictions[f"p_{name}"]) for name in labels.columns}
    return pd.Series(auc, name="oof_auc")
