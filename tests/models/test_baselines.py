"""Baselines on tiny hand data: popularity, content-only, item-based CF, vector neighbours."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.baselines import (
    LIST_COLUMNS,
    attach_content_similarity,
    content_lists,
    content_popularity_lists,
    gated_cooccurrence_lists,
    gated_popularity_lists,
    item_cf_lists,
    popularity_lists,
    ungated_pairs,
    vector_lists,
)
from models.vectors import ItemVectors


def related(lists: pd.DataFrame, source: str) -> list[str]:
    rows = lists[lists["video_id"] == source].sort_values("rank")
    assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
    return rows["related_video_id"].tolist()


def clicks(*user_videos: tuple[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(list(user_videos), columns=["user_id", "video_id"])
    return frame.assign(clicked=1)


def test_popularity_excludes_the_source_and_breaks_ties_by_id():
    # clicks: a 3, b 2, c 2, d 1; one non-click on d does not count
    events = clicks(("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "c"), ("u2", "b"),
                    ("u3", "b"), ("u1", "c"), ("u4", "d"))  # fmt: skip
    events.loc[len(events)] = ("u5", "d", 0)
    lists = popularity_lists(events, np.array(["a", "b", "e"]), 2)
    assert list(lists.columns) == LIST_COLUMNS
    assert related(lists, "a") == ["b", "c"]  # a excluded; b, c tie at 2 -> by id
    assert related(lists, "b") == ["a", "c"]
    assert related(lists, "e") == ["a", "b"]
    assert lists["content_similarity"].isna().all()
    assert lists.loc[lists["video_id"] == "e", "score"].tolist() == [3.0, 2.0]


def test_content_lists_top_n_with_ties():
    candidates = pd.DataFrame(
        {
            "source_video_id": ["s", "s", "s", "s", "t"],
            "candidate_video_id": ["d", "b", "c", "a", "a"],
            "content_similarity": [0.7, 0.9, 0.7, 0.8, 0.66],
        }
    )
    lists = content_lists(candidates, 3)
    assert related(lists, "s") == ["b", "a", "c"]  # c and d tie at 0.7 -> c first
    assert related(lists, "t") == ["a"]
    assert lists["content_similarity"].tolist() == lists["score"].tolist()


def test_item_cf_cosine_on_three_users():
    # u1 {a, b}, u2 {a, b, c}, u3 {a, c}; users per video: a 3, b 2, c 2
    # co-occurrence: ab 2, ac 2, bc 1 -> cos ab = ac = 2 / sqrt(6), cos bc = 1 / sqrt(4) = 0.5
    events = clicks(("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"),
                    ("u3", "a"), ("u3", "c"), ("u3", "c"))  # fmt: skip
    lists = item_cf_lists(events, 2, min_cooccurrence=1)
    assert related(lists, "a") == ["b", "c"]
    assert related(lists, "b") == ["a", "c"]
    scores = lists.set_index(["video_id", "related_video_id"])["score"]
    assert scores[("a", "b")] == pytest.approx(2 / math.sqrt(6))
    assert scores[("b", "c")] == pytest.approx(0.5)
    assert not (lists["video_id"] == lists["related_video_id"]).any()
    # blockwise gives the same table
    pd.testing.assert_frame_equal(item_cf_lists(events, 2, 1, block_size=1), lists)
    # co-occurrence >= 2 drops b-c
    strict = item_cf_lists(events, 2, min_cooccurrence=2)
    assert related(strict, "b") == ["a"]
    assert related(strict, "c") == ["a"]


def vectors() -> ItemVectors:
    return ItemVectors.from_raw(
        np.array(["a", "b", "c", "d"]),
        np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]]),
    )


def test_vector_lists_nearest_neighbours():
    lists = vector_lists(vectors(), 2)
    assert related(lists, "a") == ["b", "d"]
    assert related(lists, "c") == ["d", "b"]
    assert lists["score"].between(-1, 1.0001).all()


def test_vector_lists_restricted_to_candidates():
    candidates = pd.DataFrame(
        {
            "source_video_id": ["a", "a", "a", "c"],
            "candidate_video_id": ["c", "d", "zz", "a"],  # zz has no vector: dropped
            "content_similarity": [0.9, 0.7, 0.8, 0.9],
        }
    )
    lists = vector_lists(vectors(), 5, candidates)
    assert related(lists, "a") == ["d", "c"]  # b is nearer but not a candidate
    assert related(lists, "c") == ["a"]
    assert lists.loc[lists["video_id"] == "a", "content_similarity"].tolist() == [0.7, 0.9]


def test_attach_content_similarity_fills_known_pairs():
    lists = vector_lists(vectors(), 1)  # a -> b, b -> a, ...
    candidates = pd.DataFrame(
        {"source_video_id": ["a"], "candidate_video_id": ["b"], "content_similarity": [0.8]}
    )
    filled = attach_content_similarity(lists, candidates)
    assert list(filled.columns) == LIST_COLUMNS
    similarity = filled.set_index("video_id")["content_similarity"]
    assert similarity["a"] == 0.8
    assert math.isnan(similarity["b"])


def test_vector_lists_with_sign_minus_one_rank_the_least_similar_first():
    lists = vector_lists(vectors(), 2, sign=-1)
    assert related(lists, "a") == ["c", "d"]  # cosines 0 and 0.71, b (0.99) is last
    assert related(lists, "c") == ["a", "b"]  # cosines 0 and 0.11
    a = lists[lists["video_id"] == "a"]
    assert np.allclose(a["score"], [0.0, -math.sqrt(0.5)])
    with pytest.raises(ValueError, match="sign"):
        vector_lists(vectors(), 2, sign=2)


def test_ungated_pairs_are_the_union_of_each_models_neighbours():
    other = ItemVectors.from_raw(np.array(["a", "c"]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    pairs = ungated_pairs([vectors(), other], 1)
    found = set(zip(pairs["source_video_id"], pairs["candidate_video_id"], strict=True))
    # vectors(): a->b, b->a, c->d, d->b (0.78 beats 0.71); other: a->c, c->a
    assert found == {("a", "b"), ("b", "a"), ("c", "d"), ("d", "b"), ("a", "c"), ("c", "a")}
    assert len(pairs) == len(found)
    assert ungated_pairs([], 3).empty


def test_ungated_pairs_of_some_sources_are_those_sources_rows_of_all():
    other = ItemVectors.from_raw(np.array(["a", "c"]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    everything = ungated_pairs([vectors(), other], 2)
    some = ungated_pairs([vectors(), other], 2, sources=np.array(["c", "d", "zz"]))
    expected = everything[everything["source_video_id"].isin(["c", "d"])]
    pd.testing.assert_frame_equal(some, expected.reset_index(drop=True))


def gated(source: str, similarities: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_video_id": source,
            "candidate_video_id": list(similarities),
            "content_similarity": list(similarities.values()),
        }
    )


def click_counts(counts: dict[str, int]) -> pd.DataFrame:
    """Training events with counts[v] clicks on v by distinct users, and one non-click on each."""
    rows = [(f"u{k}", video) for video, count in counts.items() for k in range(count)]
    events = clicks(*rows)
    for video in counts:
        events.loc[len(events)] = ("u-skip", video, 0)
    return events


def test_gated_popularity_orders_candidates_by_clicks_ties_by_similarity_not_id():
    candidates = pd.concat(
        [gated("s", {"a": 0.5, "b": 0.9, "c": 0.1, "d": 0.95}), gated("t", {"a": 0.3})]
    )
    events = click_counts({"a": 2, "b": 2, "c": 3, "x": 9})  # d: no click; x: no candidate
    lists = gated_popularity_lists(candidates, events, 3)
    assert list(lists.columns) == LIST_COLUMNS
    assert related(lists, "s") == ["c", "b", "a"]  # a and b tie at 2 clicks: b is more similar
    assert lists.loc[lists["video_id"] == "s", "score"].tolist() == [3.0, 2.0, 2.0]
    assert lists.loc[lists["video_id"] == "s", "content_similarity"].tolist() == [0.1, 0.9, 0.5]
    assert related(lists, "t") == ["a"]
    everything = gated_popularity_lists(candidates, events, 10)
    assert related(everything, "s") == ["c", "b", "a", "d"]
    assert everything.loc[everything["related_video_id"] == "d", "score"].item() == 0.0


def test_content_popularity_orders_by_similarity_ties_by_clicks_not_id():
    candidates = gated("s", {"a": 0.8, "b": 0.8, "c": 0.7, "d": 0.9})
    events = click_counts({"a": 1, "b": 3, "c": 5})  # d: no click; max clicks 5
    lists = content_popularity_lists(candidates, events, 4)
    assert related(lists, "s") == ["d", "b", "a", "c"]  # a and b tie at 0.8: b has more clicks
    expected = [0.9, 0.8 + 1e-6 * 3 / 6, 0.8 + 1e-6 * 1 / 6, 0.7 + 1e-6 * 5 / 6]
    assert lists["score"].tolist() == pytest.approx(expected, abs=1e-15)
    assert lists["score"].is_monotonic_decreasing and lists["score"].is_unique
    assert lists["content_similarity"].tolist() == [0.9, 0.8, 0.8, 0.7]
    # the popularity term never outweighs a similarity gap of 1e-6 or more
    assert (lists["score"] - lists["content_similarity"]).between(0, 1e-6).all()


def cooccurrence_events() -> pd.DataFrame:
    # users of s: u1, u2, u3 (u1 twice: still one user, two clicks)
    # a {u1, u4}: c = 1, jaccard 1 / (3 + 2 - 1) = 1/4, 2 clicks
    # b {u2, u3, u5}: c = 2, jaccard 2 / (3 + 3 - 2) = 1/2
    # c {u2, u6 twice}: c = 1, jaccard 1/4, 3 clicks
    # d {u7}, f {u7, u8}, g {u9}: no user shared with s; e: never clicked
    events = clicks(("u1", "s"), ("u1", "s"), ("u2", "s"), ("u3", "s"),
                    ("u1", "a"), ("u4", "a"), ("u2", "b"), ("u3", "b"), ("u5", "b"),
                    ("u2", "c"), ("u6", "c"), ("u6", "c"),
                    ("u7", "d"), ("u7", "f"), ("u8", "f"), ("u9", "g"))  # fmt: skip
    events.loc[len(events)] = ("u1", "d", 0)  # not a click: d still shares no user with s
    return events


def test_gated_cooccurrence_is_jaccard_ties_by_clicks_then_similarity_not_id():
    candidates = pd.concat(
        [
            gated("s", {"a": 0.5, "b": 0.2, "c": 0.3, "d": 0.9, "e": 0.99, "f": 0.1, "g": 0.95}),
            gated("t", {"a": 0.3, "s": 0.2}),  # t was never clicked: both score 0
        ]
    )
    lists = gated_cooccurrence_lists(candidates, cooccurrence_events(), 10)
    assert list(lists.columns) == LIST_COLUMNS
    # b 1/2; c and a tie at 1/4: c has 3 clicks, a 2; then score 0: f (2 clicks), then g and d
    # (1 click each) by similarity, g 0.95 before d 0.9; e last (no clicks) despite 0.99
    assert related(lists, "s") == ["b", "c", "a", "f", "g", "d", "e"]
    scores = lists[lists["video_id"] == "s"].set_index("related_video_id")["score"]
    assert scores["b"] == pytest.approx(0.5)
    assert scores["a"] == pytest.approx(0.25) and scores["c"] == pytest.approx(0.25)
    assert (scores[["d", "e", "f", "g"]] == 0).all()
    assert related(lists, "t") == ["s", "a"]  # s has 4 clicks, a 2
    # blockwise gives the same lists, down to one source per block
    for block_size in (1, 2):
        pd.testing.assert_frame_equal(
            gated_cooccurrence_lists(candidates, cooccurrence_events(), 10, block_size), lists
        )
    top = gated_cooccurrence_lists(candidates, cooccurrence_events(), 2)
    assert related(top, "s") == ["b", "c"]


def test_gated_bars_on_empty_candidates():
    empty = pd.DataFrame(columns=["source_video_id", "candidate_video_id", "content_similarity"])
    for bar in (gated_popularity_lists, content_popularity_lists, gated_cooccurrence_lists):
        lists = bar(empty, cooccurrence_events(), 5)
        assert list(lists.columns) == LIST_COLUMNS and lists.empty
