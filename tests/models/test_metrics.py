"""Hand-computed cases for every offline metric."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models import metrics


def lists_of(rows: dict[str, list[str]], similarity: dict | None = None) -> pd.DataFrame:
    records = [
        (source, rank, target)
        for source, targets in rows.items()
        for rank, target in enumerate(targets, start=1)
    ]
    frame = pd.DataFrame(records, columns=["video_id", "rank", "related_video_id"])
    if similarity is not None:
        frame["content_similarity"] = [similarity.get((s, t), np.nan) for s, _, t in records]
    return frame


def pairs_of(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(list(pairs), columns=["source_video_id", "video_id"])


def test_recall_and_ndcg_single_source():
    # list s: [a, b, c], positives {b, d}: recall@3 = 1/2
    # ndcg@3 = (1/log2(3)) / (1 + 1/log2(3))
    lists = lists_of({"s": ["a", "b", "c"]})
    positives = pairs_of(("s", "b"), ("s", "d"))
    assert metrics.recall_at_n(lists, positives, 3) == pytest.approx(0.5)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert metrics.ndcg_at_n(lists, positives, 3) == pytest.approx(expected)


def test_n_smaller_than_list_and_sources_without_list():
    # s: [a, b, c], positives {c}: @2 no hit -> 0; @3 recall 1, ndcg (1/log2(4)) / 1 = 0.5
    # t has a positive but no list -> 0; u has a list but no positive -> ignored
    lists = lists_of({"s": ["a", "b", "c"], "u": ["c"]})
    positives = pairs_of(("s", "c"), ("t", "a"), ("s", "c"))  # duplicate counts once
    assert metrics.recall_at_n(lists, positives, 2) == 0.0
    assert metrics.recall_at_n(lists, positives, 3) == pytest.approx((1 + 0) / 2)
    assert metrics.ndcg_at_n(lists, positives, 3) == pytest.approx((0.5 + 0) / 2)


def test_ndcg_ideal_is_capped_at_n():
    # s: [a, b], positives {a, b, c}, n = 2: DCG = 1 + 1/log2(3) = IDCG (min(2, 3) = 2) -> 1
    # recall = 2/3
    lists = lists_of({"s": ["a", "b"]})
    positives = pairs_of(("s", "a"), ("s", "b"), ("s", "c"))
    assert metrics.ndcg_at_n(lists, positives, 2) == pytest.approx(1.0)
    assert metrics.recall_at_n(lists, positives, 2) == pytest.approx(2 / 3)


def test_no_positives_is_nan():
    lists = lists_of({"s": ["a"]})
    assert math.isnan(metrics.recall_at_n(lists, pairs_of(), 1))
    assert math.isnan(metrics.ndcg_at_n(lists, pairs_of(), 1))


def test_dislike_rate():
    # top-2 pairs: (s,a) (s,b) (t,a) (t,b); shown: (s,a) (s,b) (t,a) -> 3 shown (s,c is rank 3)
    # disliked: (s,a) and (s,c) (not in the top 2) -> 1 / 3
    lists = lists_of({"s": ["a", "b", "c"], "t": ["a", "b"]})
    shown = pairs_of(("s", "a"), ("s", "b"), ("t", "a"), ("s", "c"), ("x", "y"))
    disliked = pairs_of(("s", "a"), ("s", "c"))
    assert metrics.dislike_rate_at_n(lists, disliked, shown, 2) == pytest.approx(1 / 3)


def test_dislike_rate_nan_when_nothing_shown():
    lists = lists_of({"s": ["a"]})
    shown = pairs_of(("s", "b"))
    assert math.isnan(metrics.dislike_rate_at_n(lists, pairs_of(("s", "b")), shown, 5))


def test_relevance_counts_missing_similarity_as_zero():
    # top-2: (s,a)=0.9, (s,b)=NaN->0, (t,a)=0.7 ; (s,c)=1.0 is rank 3
    # mean = 1.6 / 3; share >= 0.65 = 2/3
    similarity = {("s", "a"): 0.9, ("t", "a"): 0.7, ("s", "c"): 1.0}
    lists = lists_of({"s": ["a", "b", "c"], "t": ["a"]}, similarity)
    result = metrics.relevance(lists, 2, 0.65)
    assert result["mean"] == pytest.approx(1.6 / 3)
    assert result["share"] == pytest.approx(2 / 3)
    no_column = metrics.relevance(lists_of({"s": ["a"]}), 2, 0.65)
    assert no_column == {"mean": 0.0, "share": 0.0}


def test_catalog_coverage():
    # top-2 related: {a, b} out of 10 videos; c is rank 3
    lists = lists_of({"s": ["a", "b", "c"], "t": ["a"]})
    assert metrics.catalog_coverage(lists, 2, 10) == pytest.approx(0.2)


def events_frame() -> pd.DataFrame:
    columns = [
        "user_id", "video_id", "source_video_id", "ts", "clicked", "play_time_s",
        "liked", "shared", "disliked", "duration_s",
    ]  # fmt: skip
    rows = [
        ("u1", "a", "s", 1, 1, 60.0, 1, 0, 0, 100.0),  # click, watched half, like
        ("u1", "b", "s", 2, 1, 10.0, 0, 1, 0, 100.0),  # click, share
        ("u2", "c", "s", 3, 0, 0.0, 0, 0, 1, 100.0),  # dislike (shown)
        ("u2", "a", None, 4, 1, 90.0, 0, 0, 0, 100.0),  # no source: dropped
        ("u3", "a", "t", 5, 1, 50.0, 0, 0, 0, 100.0),  # click, exactly half
        ("u3", "a", "t", 6, 1, 50.0, 0, 0, 0, 100.0),  # duplicate pair
    ]
    return pd.DataFrame(rows, columns=columns)


def test_test_pairs_labels():
    events = events_frame()
    clicked = metrics.test_pairs(events, "clicked")
    assert set(map(tuple, clicked.to_numpy())) == {("s", "a"), ("s", "b"), ("t", "a")}
    watched = metrics.test_pairs(events, "watched_half")
    assert set(map(tuple, watched.to_numpy())) == {("s", "a"), ("t", "a")}
    assert set(map(tuple, metrics.test_pairs(events, "disliked").to_numpy())) == {("s", "c")}
    with pytest.raises(ValueError):
        metrics.test_pairs(events, "clicks")


def test_evaluate_lists():
    # lists: s -> [a, c], t -> [b]; n = 2
    # click positives: s {a, b}, t {a}: recall = (1/2 + 0) / 2 = 0.25
    #   ndcg: s DCG 1, IDCG 1 + 1/log2(3); t 0
    # play_time: s {a}, t {a}: recall (1 + 0) / 2; like: s {a}: 1; share: s {b}: 0
    # dislike: shown top pairs (s,a) (s,c) -> (s,c) disliked -> 1/2
    # coverage {a, b, c} / 4; cold {t}: recall_click_cold 0, recall_like_cold NaN
    lists = lists_of({"s": ["a", "c"], "t": ["b"]}, {("s", "a"): 0.8, ("s", "c"): 0.5})
    result = metrics.evaluate_lists(lists, events_frame(), 2, 0.65, 4, cold_videos={"t"})
    assert result["recall_click"] == pytest.approx(0.25)
    assert result["ndcg_click"] == pytest.approx(1 / (1 + 1 / math.log2(3)) / 2)
    assert result["recall_play_time"] == pytest.approx(0.5)
    assert result["recall_like"] == pytest.approx(1.0)
    assert result["recall_share"] == 0.0
    assert result["dislike_rate"] == pytest.approx(0.5)
    assert result["relevance_mean"] == pytest.approx(1.3 / 3)
    assert result["relevance_share"] == pytest.approx(1 / 3)
    assert result["coverage"] == pytest.approx(0.75)
    assert result["recall_click_cold"] == 0.0
    assert math.isnan(result["recall_like_cold"])
    assert "recall_click_cold" not in metrics.evaluate_lists(lists, events_frame(), 2, 0.65, 4)


def test_change_vs_baseline_signs():
    table = pd.DataFrame(
        {"recall_click": [0.2, 0.3, 0.1], "dislike_rate": [0.1, 0.05, 0.0]},
        index=["als_click", "full", "popularity"],
    )
    table.loc["zero"] = [0.0, 0.0]
    change = metrics.change_vs_baseline(table, "als_click", {"dislike_rate"})
    # full: recall (0.3 - 0.2) / 0.2 = +50 %; dislike (0.05 - 0.1) / 0.1 = -50 % (an improvement)
    assert change.loc["full", "recall_click"] == pytest.approx(50.0)
    assert change.loc["full", "dislike_rate"] == pytest.approx(-50.0)
    assert change.loc["popularity", "recall_click"] == pytest.approx(-50.0)
    assert change.loc["als_click"].tolist() == [0.0, 0.0]
    assert change.attrs["lower_is_better"] == ["dislike_rate"]
    zero_base = metrics.change_vs_baseline(table, "zero", set())
    assert zero_base.isna().all().all()
    with pytest.raises(ValueError):
        metrics.change_vs_baseline(table, "missing", set())


def test_paired_comparison_of_a_list_with_itself_is_zero_and_its_means_are_the_metrics():
    events = events_frame()
    good = lists_of({"s": ["a", "b", "c"], "t": ["a"]})
    bad = lists_of({"s": ["x", "c"], "t": ["y"]})
    same = metrics.paired_comparison(good, good, events, 3, 200, seed=1)
    for figures in same.values():
        assert figures["difference"] == figures["low"] == figures["high"] == 0
    compared = metrics.paired_comparison(good, bad, events, 3, 200, seed=1)
    click = metrics.test_pairs(events, "clicked")
    expected = metrics.recall_at_n(good, click, 3) - metrics.recall_at_n(bad, click, 3)
    assert compared["recall_click"]["difference"] == pytest.approx(expected)
    assert compared["recall_click"]["sources"] == 2
    assert 0 < compared["recall_click"]["low"] <= compared["recall_click"]["high"]
    ndcg = metrics.ndcg_at_n(good, click, 3) - metrics.ndcg_at_n(bad, click, 3)
    assert compared["ndcg_click"]["difference"] == pytest.approx(ndcg)
    # Both list the disliked c: 1 of 4 shown pairs disliked (s-a, s-b, s-c, t-a) against 1 of 1.
    assert compared["dislike_rate"]["difference"] == pytest.approx(1 / 4 - 1)
    # Seeded: the same call gives the same interval.
    again = metrics.paired_comparison(good, bad, events, 3, 200, seed=1)
    assert again == compared
