"""Stage 3: score = sum_k sign_k * a_k * w_k * s^k (plus any weighed pair evidence) over each
candidate pair, with s^k the calibrated per-objective similarity (models/fusion.py); the top N
per source, each with its reason.

Only the candidate pairs given are scored: the relevance gate of stage 1 is never bypassed. A pair
that only fills a short list (column `gated` False) competes by its score, or ranks after every
gated one (`gated_first`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.candidates import GATED  # optional column: False on a pair that fills a short list

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("source_video_id", "candidate_video_id")
NO_SHARED = "no shared attribute"
FILLS = "below the relevance gate, fills a short list"
NO_SIGNAL = "no signal lifts it above the source's other candidates"


@dataclass(frozen=True)
class MergeObjective:
    name: str
    sign: int  # +1, or -1 for an objective that subtracts (dislike)
    manual_weight: float  # a_k
    learned_weight: float  # w_k

    @property
    def factor(self) -> float:
        return self.sign * self.manual_weight * self.learned_weight


def contribution_column(name: str) -> str:
    return f"contribution_{name}"


def merge_scores(
    pairs: pd.DataFrame,
    similarities: Mapping[str, np.ndarray],
    objectives: Sequence[MergeObjective],
) -> pd.DataFrame:
    """`pairs` plus contribution_<name> = sign * a * w * s^k per objective and their sum, score."""
    _require(pairs, PAIR_COLUMNS, "pairs")
    if not objectives:
        raise ValueError("merge: no objectives")
    contributions = {}
    for objective in objectives:
        if objective.sign not in (1, -1):
            raise ValueError(f"merge: sign of {objective.name} is {objective.sign}, not +1 or -1")
        if objective.name not in similarities:
            raise ValueError(f"merge: no similarities for objective {objective.name}")
        similarity = np.asarray(similarities[objective.name], dtype=np.float64)
        if similarity.shape != (len(pairs),):
            raise ValueError(
                f"merge: {similarity.shape} similarities of {objective.name} for {len(pairs)} pairs"
            )
        contributions[contribution_column(objective.name)] = objective.factor * similarity
    score = np.sum(list(contributions.values()), axis=0) if len(pairs) else np.zeros(0)
    return pairs.assign(**contributions, score=score)


def rank_related(scored: pd.DataFrame, top_n: int, gated_first: bool = False) -> pd.DataFrame:
    """The `top_n` candidates of each source by score (ties: higher content_similarity, then
    candidate id ascending), with `rank` 1..n per source; sorted by source, rank. With
    `gated_first` and a column `gated`, a source's gated pairs come before those that only fill
    its list."""
    _require(scored, [*PAIR_COLUMNS, "score", "content_similarity"], "scored pairs")
    if top_n < 1:
        raise ValueError(f"merge: top_n must be at least 1, not {top_n}")
    tier = [GATED] if gated_first and GATED in scored else []
    ordered = scored.sort_values(
        ["source_video_id", *tier, "score", "content_similarity", "candidate_video_id"],
        ascending=[True, *([False] * len(tier)), False, False, True],
        kind="mergesort",
    )
    rank = ordered.groupby("source_video_id", sort=False).cumcount().to_numpy() + 1
    ranked = ordered.assign(rank=rank)
    return ranked[ranked["rank"] <= top_n].reset_index(drop=True)


def reasons(
    ranked: pd.DataFrame,
    names: Sequence[str],
    typical: pd.DataFrame | None = None,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """`ranked` plus reason_objective (the signal that lifts the pair most; missing where none
    lifts it) and reason, a short text built from the shared attributes. Without `typical` a
    signal's lift is its contribution; with it (per source_video_id, the mean contribution_<name>
    over the source's candidates) the contribution above that mean: what sets this candidate
    above the source's others, not what every candidate of the source gets alike. `labels`: the
    text naming a signal in the reason (default: its name)."""
    columns = [contribution_column(name) for name in names]
    _require(ranked, [*columns, "shared"], "ranked pairs")
    contributions = ranked[columns].to_numpy(dtype=np.float64)
    if typical is not None:
        sources = ranked["source_video_id"]
        contributions = contributions - typical.loc[sources, columns].to_numpy(dtype=np.float64)
    if len(ranked):
        best = np.argmax(contributions, axis=1)
        positive = contributions[np.arange(len(ranked)), best] > 0
    else:
        best, positive = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    objective = np.where(positive, np.asarray(names, dtype=object)[best], None)
    gated = ranked[GATED].to_numpy(dtype=bool) if GATED in ranked else np.ones(len(ranked), bool)
    # Output formatting over the N rows per source, not over all candidate pairs.
    labels = labels or {}
    text = [
        f"{_shared_text(shared)}; {'' if inside else FILLS + '; '}"
        f"{f'most from {labels.get(name, name)}' if name is not None else NO_SIGNAL}"
        for shared, name, inside in zip(ranked["shared"], objective, gated, strict=True)
    ]
    return ranked.assign(
        reason_objective=objective, reason=pd.Series(text, index=ranked.index, dtype=object)
    )


def related_table(
    pairs: pd.DataFrame,
    similarities: Mapping[str, np.ndarray],
    objectives: Sequence[MergeObjective],
    top_n: int,
    gated_first: bool = False,
) -> pd.DataFrame:
    """The whole stage: from candidate pairs (source_video_id, candidate_video_id,
    content_similarity, shared) and each objective's s^k per pair to the related table, sorted
    by video_id, rank (`gated_first`: as `rank_related`)."""
    _require(pairs, [*PAIR_COLUMNS, "content_similarity", "shared"], "pairs")
    scored = merge_scores(pairs, similarities, objectives)
    names = [objective.name for objective in objectives]
    columns = [contribution_column(name) for name in names]
    typical = scored.groupby("source_video_id", sort=False)[columns].mean()
    # A subtracting signal lifts a pair by being low: "most from low dislike".
    labels = {o.name: o.name if o.sign > 0 else f"low {o.name}" for o in objectives}
    explained = reasons(rank_related(scored, top_n, gated_first), names, typical, labels)
    columns = [
        "video_id",
        "rank",
        "related_video_id",
        "score",
        "content_similarity",
        *(contribution_column(name) for name in names),
        "shared",
        "reason_objective",
        "reason",
    ]
    table = explained.rename(
        columns={"source_video_id": "video_id", "candidate_video_id": "related_video_id"}
    )
    return table[columns].reset_index(drop=True)


def _shared_text(shared: Sequence[str]) -> str:
    return f"shares {', '.join(shared)}" if len(shared) else NO_SHARED


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")
