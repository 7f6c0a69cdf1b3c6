"""Score diagnostics of a related table on hand data: tied lists, distinct scores, rows at the
maximum, contributions and reasons per objective."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.diagnostics import distinct_scores, score_diagnostics, tied_lists


def table() -> pd.DataFrame:
    """Four lists: a tied (3 rows at 0.4, one off by 1e-13), b distinct (0.9, 0.4, 0.4),
    c one row (0.9), d tied (2 rows at 0.2), given out of rank order."""
    rows = [
        ("a", 1, "a1", 0.4, 0.3, 0.1, "als"),
        ("a", 2, "a2", 0.4 + 1e-13, 0.1, 0.3, "tt"),
        ("a", 3, "a3", 0.4, 0.0, 0.0, None),
        ("b", 2, "b2", 0.4, 0.2, 0.2, "als"),
        ("b", 1, "b1", 0.9, 0.5, 0.4, "als"),
        ("b", 3, "b3", 0.4, 0.0, 0.0, np.nan),
        ("c", 1, "c1", 0.9, 0.0, 0.9, "tt"),
        ("d", 1, "d1", 0.2, 0.0, 0.0, None),
        ("d", 2, "d2", 0.2, 0.0, 0.0, None),
    ]
    columns = ["video_id", "rank", "related_video_id", "score"]
    columns += ["contribution_als", "contribution_tt", "reason_objective"]
    return pd.DataFrame(rows, columns=columns)


def test_tied_lists_need_two_rows_all_at_the_first_score():
    tied = tied_lists(table())
    assert tied.dtype == bool
    assert tied.to_dict() == {"a": True, "b": False, "c": False, "d": True}


def test_a_score_off_by_more_than_the_tolerance_is_not_a_tie():
    frame = table()
    frame.loc[1, "score"] = 0.4 + 1e-9
    assert not tied_lists(frame)["a"]
    assert distinct_scores(frame)["a"] == 2


def test_distinct_scores_per_list():
    assert distinct_scores(table()).to_dict() == {"a": 1, "b": 2, "c": 1, "d": 1}


def test_score_diagnostics_by_hand():
    found = score_diagnostics(table(), ["als", "tt"])
    expected = {
        "tied_list_share": 2 / 4,  # a and d
        "distinct_scores_per_list_mean": (1 + 2 + 1 + 1) / 4,
        "rows_at_max_share": 2 / 9,  # b1 and c1 at 0.9
        "lists": 4.0,
        "mean_contribution_als": (0.3 + 0.1 + 0.2 + 0.5) / 9,
        "mean_contribution_tt": (0.1 + 0.3 + 0.2 + 0.4 + 0.9) / 9,
        "reason_share_als": 3 / 9,
        "reason_share_tt": 2 / 9,
        "reason_share_none": 4 / 9,
    }
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value), key
        assert isinstance(found[key], float)


def test_score_diagnostics_of_an_empty_table_and_missing_columns():
    empty = table().iloc[:0]
    found = score_diagnostics(empty, ["als", "tt"])
    assert found["lists"] == 0.0
    assert math.isnan(found["tied_list_share"]) and math.isnan(found["reason_share_none"])
    with pytest.raises(ValueError, match="contribution_other"):
        score_diagnostics(table(), ["als", "other"])
