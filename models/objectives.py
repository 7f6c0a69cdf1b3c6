"""The objectives' event labels and user-video matrix values, defined once for all of the code.

A label says which events are positives (watched_half = clicked and played >= half the duration);
a value says what a routed positive puts in its objective's user x video matrix cell.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

LABELS = ("clicked", "watched_half", "liked", "shared", "disliked")
# Columns a label is computed from: none of them may ever be a model input.
LABEL_SOURCES = frozenset(LABELS) | {"play_time_s"}

# How each objective's user-video matrix cell is built from its routed positive events.
_VALUES: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "clicks": lambda events: events["clicked"].astype(float),
    "log1p_play_time": lambda events: np.log1p(events["play_time_s"].astype(float)),
    "likes": lambda events: events["liked"].astype(float),
    "shares": lambda events: events["shared"].astype(float),
    "dislikes": lambda events: events["disliked"].astype(float),
}
VALUES = tuple(_VALUES)


def positives(events: pd.DataFrame, label: str) -> np.ndarray:
    """Bool per event: a positive of `label` (missing flags count as 0)."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    clicked = events["clicked"].fillna(0).to_numpy() == 1
    if label == "clicked":
        return clicked
    if label == "watched_half":
        return clicked & (events["play_time_s"] >= events["duration_s"] / 2).to_numpy()
    return events[label].fillna(0).to_numpy() == 1


def matrix_values(events: pd.DataFrame, value: str) -> pd.Series:
    """The matrix cell value (`VALUES`) of each event, aligned with `events`."""
    if value not in _VALUES:
        raise ValueError(f"unknown matrix value {value!r}; expected one of {VALUES}")
    return _VALUES[value](events)
