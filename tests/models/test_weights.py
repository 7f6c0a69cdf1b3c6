"""Objective weights from retention: labels, per-user means, the sign-checked logistic weights."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from models.weights import (
    ObjectiveWeights,
    fit_objective_weights,
    retention_labels,
    retention_window,
    user_mean_outputs,
)

SIGNS = {"like": 1, "dislike": -1}
T0 = pd.Timestamp("2026-01-05")


def _users(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Retention rises strongly with p_like, falls mildly with p_dislike."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {"like": rng.uniform(0, 1, n), "dislike": rng.uniform(0, 1, n)},
        index=pd.Index([f"u{i:04d}" for i in range(n)], name="user_id"),
    )
    logit = 6.0 * (features["like"] - 0.5) - 1.5 * (features["dislike"] - 0.5)
    retained = pd.Series(rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit)), index=features.index)
    return features, retained


def test_weights_follow_retention_and_sum_to_one():
    features, retained = _users()
    fitted = fit_objective_weights(features, retained, SIGNS, seed=99)
    assert fitted.coefficients["like"] > 0 > fitted.coefficients["dislike"]
    assert fitted.weights["like"] > fitted.weights["dislike"] > 0
    assert sum(fitted.weights.values()) == pytest.approx(1.0)
    assert fitted.clipped == ()
    assert fitted.n_users == 400
    assert fitted.retained_share == pytest.approx(retained.mean())
    assert fitted == fit_objective_weights(features, retained, SIGNS, seed=99)
    assert fitted.to_dict()["weights"] == fitted.weights


def test_contradicting_sign_is_clipped_with_a_warning(caplog):
    features, retained = _users()
    flipped = {"like": 1, "dislike": 1}  # more "dislike" predicts less retention: contradicts +1
    with caplog.at_level(logging.WARNING, logger="models.weights"):
        fitted = fit_objective_weights(features, retained, flipped, seed=99)
    assert fitted.clipped == ("dislike",)
    assert fitted.weights == {"like": 1.0, "dislike": 0.0}
    assert any("dislike" in r.message and "contradicts" in r.message for r in caplog.records)


def test_zero_variance_column_gets_weight_zero():
    features, retained = _users()
    features["share"] = 0.3
    fitted = fit_objective_weights(features, retained, {**SIGNS, "share": 1}, seed=99)
    assert fitted.coefficients["share"] == 0.0
    assert fitted.weights["share"] == 0.0
    assert fitted.weights["like"] > 0


def test_one_class_labels_fall_back_to_equal_weights(caplog):
    features, retained = _users()
    with caplog.at_level(logging.WARNING, logger="models.weights"):
        fitted = fit_objective_weights(features, retained | True, SIGNS, seed=99)
    assert fitted.weights == {"like": 0.5, "dislike": 0.5}
    assert any("equal weights" in r.message and "every user" in r.message for r in caplog.records)


def test_all_weights_clipped_fall_back_to_equal_weights(caplog):
    features, retained = _users()
    with caplog.at_level(logging.WARNING, logger="models.weights"):
        fitted = fit_objective_weights(features, retained, {"like": -1, "dislike": 1}, seed=99)
    assert set(fitted.clipped) == {"like", "dislike"}
    assert fitted.weights == {"like": 0.5, "dislike": 0.5}
    assert any("equal weights" in r.message for r in caplog.records)


def test_misaligned_or_empty_inputs_are_refused():
    features, retained = _users()
    with pytest.raises(ValueError, match="do not align"):
        fit_objective_weights(features, retained.iloc[1:], SIGNS, seed=99)
    with pytest.raises(ValueError, match="no users"):
        fit_objective_weights(features.iloc[:0], retained.iloc[:0], SIGNS, seed=99)
    with pytest.raises(ValueError, match="sign"):
        fit_objective_weights(features, retained, {"like": 1}, seed=99)


def _timeline() -> pd.DataFrame:
    day = pd.Timedelta(days=1)
    rows = [
        ("a", T0),  # seen before the cut-off, back within 7 days
        ("a", T0 + 12 * day),
        ("b", T0 + 1 * day),  # seen before, back only after 7 days
        ("b", T0 + 18 * day),
        ("c", T0 + 10 * day),  # exactly at the cut-off, never back
        ("d", T0 + 11 * day),  # first seen after the cut-off: no label
        ("e", T0 + 2 * day),  # back exactly at cut-off + 7 days (inclusive)
        ("e", T0 + 17 * day),
    ]
    return pd.DataFrame(rows, columns=["user_id", "ts"])


def test_default_cutoff_and_retention_labels():
    events = _timeline()
    cutoff, window = retention_window(events, days=8)  # the log spans 18 days
    assert cutoff == T0 + pd.Timedelta(days=10) and window == 8
    labels = retention_labels(events, cutoff, days=7)
    assert labels.to_dict() == {"a": True, "b": False, "c": False, "e": True}
    assert labels.index.name == "user_id"


def test_a_log_shorter_than_two_windows_is_split_in_half():
    events = _timeline()  # 18 days
    cutoff, window = retention_window(events, days=12)
    assert window == 9 and cutoff == T0 + pd.Timedelta(days=9)


def test_user_mean_outputs_use_only_events_up_to_the_cutoff():
    outputs = _timeline().assign(
        p_like=[0.2, 0.9, 0.4, 0.9, 0.6, 0.9, 0.1, 0.9],
        p_dislike=[0.0, 1.0, 0.2, 1.0, 0.4, 1.0, 0.3, 1.0],
    )
    outputs = pd.concat([outputs, outputs.iloc[[0]].assign(p_like=0.4, p_dislike=0.2)])
    means = user_mean_outputs(outputs, ["like", "dislike"], T0 + pd.Timedelta(days=10))
    assert list(means.columns) == ["like", "dislike"]
    assert means.index.tolist() == ["a", "b", "c", "e"]
    assert means.loc["a", "like"] == pytest.approx(0.3)
    assert means.loc["a", "dislike"] == pytest.approx(0.1)
    assert means.loc["c", "like"] == pytest.approx(0.6)


def test_objective_weights_to_dict_is_plain():
    fitted = ObjectiveWeights({"like": 1.0}, {"like": 0.5}, ("x",), 0.1, 3, 0.5)
    assert fitted.to_dict() == {
        "weights": {"like": 1.0},
        "coefficients": {"like": 0.5},
        "clipped": ["x"],
        "intercept": 0.1,
        "n_users": 3,
        "retained_share": 0.5,
        "method": "retention",
    }
