"""top_k_neighbours against a full stable argsort: the same neighbours in the same order, ties
(repeated and zero vectors) by position, for both signs and every k."""

from __future__ import annotations

import numpy as np
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
