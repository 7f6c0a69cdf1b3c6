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
