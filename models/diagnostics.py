"""Diagnostics of a related table's scores: how many lists are one tied score, how many distinct
scores a list has, and how much each objective contributes to and explains the lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Two scores closer than this are one score (the merge sums float contributions).
SCORE_ATOL = 1e-12


def _by_list(table: pd.DataFrame) -> pd.DataFrame:
    """video_id, rank and score, each list in rank order (stable: the table's order on ties)."""
    return table[["video_id", "rank", "score"]].sort_values(["video_id", "rank"], kind="mergesort")


def tied_lists(table: pd.DataFrame) -> pd.Series:
    """Per video_id (sorted): True where its list has at least 2 rows and every score equals the
    first (rank 1) score within SCORE_ATOL. A NaN score ties with nothing."""
    ordered = _by_list(table)
    score = ordered["score"].to_numpy(dtype=np.float64)
    lists = ordered.groupby("video_id", sort=True)["score"]
    first = lists.transform("first").to_numpy(dtype=np.float64)
    same = pd.Series(np.isclose(score, first, rtol=0, atol=SCORE_ATOL), index=ordered.index)
    all_same = same.groupby(ordered["video_id"], sort=True).all()
    return (all_same & (lists.size() >= 2)).rename("tied")


def distinct_scores(table: pd.DataFrame) -> pd.Series:
    """Per video_id (sorted): the number of distinct scores of its list, scores closer than
    SCORE_ATOL to the next lower one counted as one (a NaN counts as its own score)."""
    ordered = table[["video_id", "score"]].sort_values(["video_id", "score"], kind="mergesort")
    step = ordered.groupby("video_id", sort=False)["score"].diff()
    new = ~(step.abs() <= SCORE_ATOL)  # the first of a list (NaN step) starts a new score
    return new.groupby(ordered["video_id"], sort=True).sum().astype(int).rename("distinct_scores")


def score_diagnostics(table: pd.DataFrame, objective_names: Sequence[str]) -> dict[str, float]:
    """Summary numbers of a related table (video_id, rank, related_video_id, score,
    contribution_<name> per signal, reason_objective missing where no signal lifts the pair):

    tied_list_share: share of lists of >= 2 rows whose scores all equal the first;
    distinct_scores_per_list_mean: mean number of distinct scores per list;
    rows_at_max_share: share of rows whose score equals the table's largest;
    lists: number of lists; per objective mean_contribution_<name> and reason_share_<name>
    (share of rows it explains), and reason_share_none (rows no objective explains).
    Scores are equal within SCORE_ATOL; shares and means of an empty table are NaN."""
    contribution = [f"contribution_{name}" for name in objective_names]
    needed = ["video_id", "rank", "related_video_id", "score", "reason_objective", *contribution]
    missing = [column for column in needed if column not in table]
    if missing:
        raise ValueError(f"score_diagnostics: the table lacks {missing}")
    rows = len(table)
    lists = int(table["video_id"].nunique())
    score = table["score"].to_numpy(dtype=np.float64)
    top = np.nanmax(score) if rows else np.nan
    at_max = np.isclose(score, top, rtol=0, atol=SCORE_ATOL).mean() if rows else np.nan
    diagnostics = {
        "tied_list_share": float(tied_lists(table).mean()) if lists else np.nan,
        "distinct_scores_per_list_mean": float(distinct_scores(table).mean()) if lists else np.nan,
        "rows_at_max_share": float(at_max),
        "lists": float(lists),
    }
    reason = table["reason_objective"]
    for name, column in zip(objective_names, contribution, strict=True):
        diagnostics[f"mean_contribution_{name}"] = float(table[column].mean())
        diagnostics[f"reason_share_{name}"] = float((reason == name).mean()) if rows else np.nan
    diagnostics["reason_share_none"] = float(reason.isna().mean()) if rows else np.nan
    return diagnostics
