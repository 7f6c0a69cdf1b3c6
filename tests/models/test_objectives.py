"""The objective labels and matrix values of models/objectives.py, and the one AUC helper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from models.metrics import roc_auc, sampled_auc
from models.objectives import LABEL_SOURCES, LABELS, VALUES, matrix_values, positives

EVENTS = pd.DataFrame(
    {
        "clicked": [1, 1, 0, np.nan, 1],
        "play_time_s": [50.0, 10.0, 0.0, np.nan, 30.0],
        "duration_s": [60.0, 60.0, 60.0, 60.0, 60.0],
        "liked": [1, np.nan, 0, 0, 0],
        "shared": [0, 0, 0, 0, 1],
        "disliked": [0, 1, 0, 0, 0],
    }
)


def test_labels_on_hand_cases():
    assert positives(EVENTS, "clicked").tolist() == [True, True, False, False, True]
    assert positives(EVENTS, "watched_half").tolist() == [True, False, False, False, True]
    assert positives(EVENTS, "liked").tolist() == [True, False, False, False, False]
    assert positives(EVENTS, "disliked").tolist() == [False, True, False, False, False]
    assert set(LABELS) <= LABEL_SOURCES and "play_time_s" in LABEL_SOURCES
    with pytest.raises(ValueError, match="unknown label"):
        positives(EVENTS, "play_time_s")


def test_matrix_values():
    np.testing.assert_allclose(
        matrix_values(EVENTS, "log1p_play_time"), np.log1p(EVENTS["play_time_s"])
    )
    assert matrix_values(EVENTS, "shares").tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert set(VALUES) == {"clicks", "log1p_play_time", "likes", "shares", "dislikes"}
    with pytest.raises(ValueError, match="unknown matrix value"):
        matrix_values(EVENTS, "plays")


def test_sampled_auc_is_the_mann_whitney_statistic_with_ties_half():
    rng = np.random.default_rng(0)
    positive, negative = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 30).astype(float)
    ranks = rankdata(np.concatenate([positive, negative]))
    n, m = len(positive), len(negative)
    expected = (ranks[:n].sum() - n * (n + 1) / 2) / (n * m)
    assert sampled_auc(positive, negative) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        sampled_auc(positive[:0], negative)


def test_roc_auc_is_nan_with_one_class():
    assert np.isnan(roc_auc(np.ones(3), np.arange(3.0)))
    assert roc_auc(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3])) == 1.0
