"""top_k_neighbours against a full stable argsort: the same neighbours in the same order, ties
(repeated and zero vectors) by position, for both signs and every k; the Arrow table of the
vectors against their frame; repeated ids refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.vectors import ItemVectors, top_k_neighbours


def _reference(vectors: ItemVectors, k: int, sign: int) -> np.ndarray:
    rows = np.arange(len(vectors))
    scores = sign * (vectors.vectors @ vectors.vectors.T)
    scores[rows, rows] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, : min(k, len(vectors) - 1)]


@pytest.mark.parametrize("seed", range(40))
def test_partial_top_k_equals_a_full_stable_sort(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(2, 50)), int(rng.integers(1, 4))
    raw = rng.integers(-2, 3, size=(n, dim)).astype(float)  # many ties, some zero rows
    vectors = ItemVectors.from_raw(np.array([f"v{i}" for i in range(n)]), raw)
    for k in (1, 3, n - 1, n + 2):
        for sign in (1, -1):
            found = top_k_neighbours(vectors, vectors.video_ids, k, sign)
            assert (found == _reference(vectors, k, sign)).all(), (n, k, sign)


def test_a_single_video_has_no_neighbours():
    vectors = ItemVectors.from_raw(np.array(["a"]), np.array([[1.0, 0.0]]))
    assert top_k_neighbours(vectors, vectors.video_ids, 5).shape == (1, 0)


def test_the_arrow_table_holds_what_the_frame_holds(tmp_path):
    rng = np.random.default_rng(0)
    vectors = ItemVectors.from_raw(np.array(["b", "a", "c"]), rng.standard_normal((3, 4)))
    vectors.to_frame().to_parquet(tmp_path / "frame.parquet", index=False)
    pq.write_table(vectors.to_table(), tmp_path / "table.parquet")
    frame, table = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in ("frame", "table"))
    assert frame["video_id"].tolist() == table["video_id"].tolist() == ["b", "a", "c"]
    back = ItemVectors.from_frame(table)
    np.testing.assert_array_equal(back.vectors, ItemVectors.from_frame(frame).vectors)
    np.testing.assert_array_equal(back.vectors, vectors.vectors)


def test_repeated_ids_are_refused_in_any_order():
    for ids in (["a", "b", "a"], ["b", "b"]):
        with pytest.raises(ValueError, match="unique"):
            ItemVectors.from_raw(np.array(ids), np.ones((len(ids), 2)))
