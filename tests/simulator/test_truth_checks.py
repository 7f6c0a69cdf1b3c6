"""Tests of simulator/truth_checks.py: the series-neighbour check on vectors with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.vectors import ItemVectors
from simulator.truth_checks import series_neighbours


def _world(n_series: int, size: int, standalone: int, dim: int = 64, noise: float = 0.0):
    """Series videos share their series' direction (plus noise); standalone ones are random."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_series, dim))
    ids, series, rows = [], [], []
    for s in range(n_series):
        for m in range(size):
            ids.append(f"s{s}_{m}")
            series.append(f"series{s}")
            rows.append(centres[s] + noise * rng.normal(size=dim))
    for m in range(standalone):
        ids.append(f"x{m}")
        series.append(None)
        rows.append(rng.normal(size=dim))
    vectors = ItemVectors.from_raw(np.array(ids), np.array(rows, dtype=np.float32))
    return vectors, pd.DataFrame({"video_id": ids, "series_id": series})


def test_perfect_vectors_score_the_largest_possible_share():
    vectors, truth = _world(n_series=30, size=11, standalone=40)
    found = series_neighbours(vectors, truth, {v: 1 for v in vectors.video_ids})
    # 10 mates per series video: every one of the top 10 is from its own series.
    assert found["series_share_at_10"] == 1.0
    assert found["series_share_chance"] < 0.05
    assert "silent_videos" not in found


def test_random_vectors_score_near_chance():
    rng = np.random.default_rng(1)
    _, truth = _world(n_series=30, size=11, standalone=40)
    vectors = ItemVectors.from_raw(
        truth["video_id"].to_numpy(), rng.normal(size=(len(truth), 64)).astype(np.float32)
    )
    found = series_neighbours(vectors, truth, {})
    assert found["series_share_at_10"] < 5 * found["series_share_chance"]


def test_sampled_queries_estimate_the_share_and_every_silent_video_is_asked():
    vectors, truth = _world(n_series=60, size=8, standalone=50, noise=1.2)
    silent = {v for v in vectors.video_ids[::7] if v.startswith("s")}
    events = {v: (0 if v in silent else 3) for v in vectors.video_ids}
    full = series_neighbours(vectors, truth, events, queries=10_000)
    sampled = series_neighbours(vectors, truth, events, queries=200, seed=3)
    assert 0.2 < full["series_share_at_10"] < 0.95  # noisy enough that sampling matters
    assert abs(sampled["series_share_at_10"] - full["series_share_at_10"]) < 0.08
    assert sampled["silent_videos"] == full["silent_videos"] == len(silent)
    # the silent figure is over every silent video, whatever the sample
    assert sampled["silent_nearest_is_series_mate"] == full["silent_nearest_is_series_mate"]
    assert series_neighbours(vectors, truth, events, queries=200, seed=3) == sampled
