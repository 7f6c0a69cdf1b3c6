"""One contract for everything that yields item vectors (both ALS engines, the two-tower model).

A test class for a model inherits `ItemVectorContract` and provides the `fitted` fixture.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.vectors import ItemVectors


class ItemVectorContract:
    """`fitted` returns (item_vectors, expected_ids): the model's ItemVectors after training on a
    small data set, and the video ids it must have a vector for."""

    @pytest.fixture
    def fitted(self):  # pragma: no cover - provided by each model's test class
        raise NotImplementedError

    def test_is_item_vectors(self, fitted):
        vectors, _ = fitted
        assert isinstance(vectors, ItemVectors)
        assert vectors.vectors.dtype == np.float32
        assert vectors.vectors.shape == (len(vectors.video_ids), vectors.dim)

    def test_covers_expected_ids_once(self, fitted):
        vectors, expected = fitted
        assert len(set(vectors.video_ids)) == len(vectors.video_ids)
        assert set(map(str, expected)) <= set(vectors.video_ids)

    def test_rows_unit_length_and_finite(self, fitted):
        vectors, _ = fitted
        assert np.isfinite(vectors.vectors).all()
        norms = np.linalg.norm(vectors.vectors, axis=1)
        assert np.allclose(norms[norms > 0], 1.0, atol=1e-4)
        assert (norms > 0).mean() > 0.9  # a model that returns zeros has learnt nothing

    def test_pair_cosine_in_range_symmetric_and_nan_for_unknown(self, fitted):
        vectors, _ = fitted
        ids = vectors.video_ids[:20]
        left, right = np.repeat(ids, len(ids)), np.tile(ids, len(ids))
        cos = vectors.pair_cosine(left, right).reshape(len(ids), len(ids))
        assert np.all(cos <= 1 + 1e-5) and np.all(cos >= -1 - 1e-5)
        assert np.allclose(cos, cos.T, atol=1e-5)
        assert np.isnan(vectors.pair_cosine(np.array(["no such video"]), ids[:1]))[0]

    def test_vectors_are_not_all_alike(self, fitted):
        vectors, _ = fitted
        sample = vectors.vectors[:50]
        sims = sample @ sample.T
        off_diagonal = sims[~np.eye(len(sample), dtype=bool)]
        assert off_diagonal.std() > 0.01

    def test_parquet_round_trip(self, fitted, tmp_path):
        vectors, _ = fitted
        path = tmp_path / "vectors.parquet"
        vectors.to_frame().to_parquet(path)
        import pandas as pd

        back = ItemVectors.from_frame(pd.read_parquet(path))
        assert np.array_equal(back.video_ids, vectors.video_ids)
        assert np.allclose(back.vectors, vectors.vectors, atol=1e-6)
