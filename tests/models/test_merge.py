"""Stage 3: the signed weighted score, top N with its tie-breaks, and the reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.merge import (
    FILLS,
    NO_SHARED,
    NO_SIGNAL,
    MergeObjective,
    merge_scores,
    rank_related,
    reasons,
    related_table,
)


def _pairs(candidates: list[str], source: str = "s", **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"source_video_id": source, "candidate_video_id": candidates})
    return frame.assign(**columns)


def test_dislike_subtracts():
    pairs = _pairs(["a", "b"])
    objectives = [MergeObjective("like", 1, 1.0, 0.5), MergeObjective("dislike", -1, 2.0, 0.5)]
    similarities = {"like": np.array([0.8, 0.8]), "dislike": np.array([0.0, 0.3])}
    scored = merge_scores(pairs, similarities, objectives)
    np.testing.assert_allclose(scored["contribution_like"], [0.4, 0.4])
    np.testing.assert_allclose(scored["contribution_dislike"], [0.0, -0.3])
    np.testing.assert_allclose(scored["score"], [0.4, 0.1])


def _two_candidates(like_manual: float) -> pd.DataFrame:
    """`liked` is the best candidate for like, `clicked` the best for click."""
    similarities = {"click": np.array([0.1, 0.9]), "like": np.array([0.6, 0.2])}
    objectives = [
        MergeObjective("click", 1, 1.0, 0.5),
        MergeObjective("like", 1, like_manual, 0.5),
    ]
    pairs = _pairs(["liked", "clicked"], content_similarity=0.8, shared=[["tags=t1"], []])
    return related_table(pairs, similarities, objectives, top_n=20)


def test_raising_the_like_weight_raises_liked_targets():
    ranks = {}
    for like_manual in (1.0, 3.0):
        table = _two_candidates(like_manual)
        ranks[like_manual] = dict(zip(table["related_video_id"], table["rank"], strict=True))
    assert ranks[1.0] == {"clicked": 1, "liked": 2}
    assert ranks[3.0] == {"liked": 1, "clicked": 2}


def test_related_table_columns_and_reasons():
    table = _two_candidates(3.0)
    assert list(table.columns) == [
        "video_id",
        "rank",
        "related_video_id",
        "score",
        "content_similarity",
        "contribution_click",
        "contribution_like",
        "shared",
        "reason_objective",
        "reason",
    ]
    assert table["reason_objective"].tolist() == ["like", "click"]
    assert table["reason"].tolist() == [
        "shares tags=t1; most from like",
        f"{NO_SHARED}; most from click",
    ]


def test_top_n_contiguous_ranks_and_tie_breaks():
    scored = pd.DataFrame(
        {
            "source_video_id": ["s"] * 5 + ["t"] * 2,
            "candidate_video_id": ["e", "d", "c", "b", "a", "x", "y"],
            "score": [0.5, 0.5, 0.5, 0.9, 0.1, 0.2, 0.3],
            "content_similarity": [0.7, 0.7, 0.9, 0.7, 0.99, 0.7, 0.7],
        }
    )
    ranked = rank_related(scored, top_n=4)
    s = ranked[ranked["source_video_id"] == "s"]
    # 0.9 first; among the 0.5s the higher content similarity (c), then ids ascending (d, e).
    assert s["candidate_video_id"].tolist() == ["b", "c", "d", "e"]
    assert s["rank"].tolist() == [1, 2, 3, 4]
    t = ranked[ranked["source_video_id"] == "t"]
    assert t["candidate_video_id"].tolist() == ["y", "x"]
    assert t["rank"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="top_n"):
        rank_related(scored, top_n=0)


def _short_list():
    pairs = _pairs(
        ["a", "b", "c"],
        content_similarity=[0.9, 0.4, 0.7],
        shared=[["tags=t1"], [], ["tags=t1"]],
        gated=[True, False, True],
    )
    return pairs, {"click": np.array([0.1, 0.9, 0.2])}, [MergeObjective("click", 1, 1.0, 1.0)]


def test_pairs_that_fill_a_short_list_rank_after_the_gated_ones_when_asked():
    # b has the highest score but lies below the gate: it comes after both gated pairs.
    table = related_table(*_short_list(), 3, gated_first=True)
    assert table["related_video_id"].tolist() == ["c", "a", "b"]
    assert [FILLS in reason for reason in table["reason"]] == [False, False, True]


def test_pairs_that_fill_a_short_list_compete_by_score_by_default():
    # The same pairs: b's score puts it first, and its reason still says it lies below the gate.
    table = related_table(*_short_list(), 3)
    assert table["related_video_id"].tolist() == ["b", "c", "a"]
    assert [FILLS in reason for reason in table["reason"]] == [True, False, False]


def test_output_pairs_come_from_the_input_pairs():
    rng = np.random.default_rng(7)
    ids = np.array([f"v{i:03d}" for i in range(60)])
    pairs = pd.DataFrame(
        {
            "source_video_id": rng.choice(ids, 600),
            "candidate_video_id": rng.choice(ids, 600),
        }
    )
    pairs = pairs[pairs["source_video_id"] != pairs["candidate_video_id"]]
    pairs = pairs.drop_duplicates(ignore_index=True)
    pairs = pairs.assign(
        content_similarity=rng.uniform(0.65, 1.0, len(pairs)).round(2),
        shared=[["styles=drama"]] * len(pairs),
    )
    similarities = {"click": rng.uniform(size=len(pairs)), "dislike": rng.uniform(size=len(pairs))}
    objectives = [MergeObjective("click", 1, 1.0, 0.7), MergeObjective("dislike", -1, 1.0, 0.3)]
    table = related_table(pairs, similarities, objectives, top_n=5)
    given = set(zip(pairs["source_video_id"], pairs["candidate_video_id"], strict=True))
    out = set(zip(table["video_id"], table["related_video_id"], strict=True))
    assert out <= given
    assert len(out) == len(table)
    per_source = table.groupby("video_id")["rank"]
    assert (per_source.max() == per_source.size()).all()
    assert (per_source.max() == np.minimum(5, pairs.groupby("source_video_id").size())).all()
    assert table.equals(table.sort_values(["video_id", "rank"], ignore_index=True))
    falling = table.groupby("video_id")["score"].apply(lambda s: s.is_monotonic_decreasing)
    assert falling.all()


def test_reason_objective_is_the_largest_contribution():
    ranked = _pairs(
        ["a", "b", "c"],
        contribution_click=[0.1, 0.4, 0.0],
        contribution_like=[0.3, 0.2, 0.0],
        contribution_dislike=[-0.1, 0.0, -0.2],
        shared=[["actors=actor00012", "tags=s00003-0"], [], ["tags=t9"]],
    )
    explained = reasons(ranked, ["click", "like", "dislike"])
    assert explained["reason_objective"].tolist() == ["like", "click", None]
    assert explained["reason"].tolist() == [
        "shares actors=actor00012, tags=s00003-0; most from like",
        f"{NO_SHARED}; most from click",
        f"shares tags=t9; {NO_SIGNAL}",
    ]


def test_reasons_name_what_lifts_a_pair_above_the_sources_other_candidates():
    # Every candidate of source s gets 0.5 from popularity alike; click sets them apart.
    pairs = pd.DataFrame(
        {
            "source_video_id": ["s"] * 4,
            "candidate_video_id": ["a", "b", "c", "d"],
            "content_similarity": [0.9, 0.8, 0.7, 0.7],
            "shared": [[]] * 4,
        }
    )
    similarities = {"click": np.array([0.4, 0.3, 0.1, 0.0]), "popularity": np.full(4, 0.5)}
    objectives = [MergeObjective("click", 1, 1.0, 1.0), MergeObjective("popularity", 1, 1.0, 1.0)]
    table = related_table(pairs, similarities, objectives, top_n=4)
    assert table["reason_objective"].tolist()[:2] == ["click", "click"]
    # Below the source's mean on every signal: nothing lifts it.
    assert table["reason_objective"].tolist()[3] is None
    # Without the per-source means, the larger raw contribution would have been named.
    ranked = merge_scores(pairs, similarities, objectives)
    assert reasons(ranked, ["click", "popularity"])["reason_objective"].iloc[0] == "popularity"


def test_a_subtracting_signal_is_named_low_when_it_lifts_a_pair():
    pairs = pd.DataFrame(
        {
            "source_video_id": ["s"] * 3,
            "candidate_video_id": ["a", "b", "c"],
            "content_similarity": [0.9, 0.8, 0.7],
            "shared": [[]] * 3,
        }
    )
    similarities = {"click": np.full(3, 0.5), "dislike": np.array([0.0, 0.3, 0.6])}
    objectives = [MergeObjective("click", 1, 1.0, 1.0), MergeObjective("dislike", -1, 1.0, 1.0)]
    table = related_table(pairs, similarities, objectives, top_n=3)
    assert table["related_video_id"].iloc[0] == "a"
    assert table["reason_objective"].iloc[0] == "dislike"
    assert table["reason"].iloc[0] == f"{NO_SHARED}; most from low dislike"
