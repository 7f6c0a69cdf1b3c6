"""Stage 1 candidates: the blocked prefix-filtered search equals brute force, pair for pair."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from models.candidates import (
    CutStats,
    candidate_arrays,
    candidate_pairs,
    candidate_summary,
    dense_reference,
    fill_arrays,
    pair_similarity,
    shared_values,
)
from models.profile import encode_profiles, fit_vocabulary


def binary(rows: list[list[int]], n_columns: int) -> sp.csr_matrix:
    data = [(r, c) for r, row in enumerate(rows) for c in row]
    row, column = (
        (np.array(x, dtype=np.int64) for x in zip(*data, strict=True)) if data else ([], [])
    )
    return sp.csr_matrix(
        (np.ones(len(row), np.float32), (row, column)), shape=(len(rows), n_columns)
    )


def naive(matrix: sp.csr_matrix, threshold: float, limit: int):
    """Loops over Python sets: the definition, written as plainly as possible."""
    sets = [
        set(matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]]) for i in range(matrix.shape[0])
    ]
    out = []
    for i, left in enumerate(sets):
        found = []
        for j, right in enumerate(sets):
            if i == j or not left or not right:
                continue
            shared = len(left & right)
            cosine = math.sqrt(shared * shared / (len(left) * len(right)))
            if cosine >= threshold:
                found.append((-cosine, j))
        out += [(i, j, -negative) for negative, j in sorted(found)[:limit]]
    return out


@st.composite
def profile_matrices(draw, max_columns: int = 14):
    """Small binary matrices with what makes the search hard: empty rows, duplicate rows, a column
    nearly every row carries, rows of very different lengths."""
    n = draw(st.integers(0, 40))
    m = draw(st.integers(1, max_columns))
    density = draw(st.floats(0.05, 0.9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dense = rng.random((n, m)) < density
    if n and draw(st.booleans()):  # a very frequent column, like a video type
        dense[:, rng.integers(m)] = rng.random(n) < 0.9
    if n > 2 and draw(st.booleans()):  # duplicate rows
        copies = rng.integers(n, size=n // 3)
        dense[rng.integers(n, size=n // 3)] = dense[copies]
    if n and draw(st.booleans()):  # empty rows
        dense[rng.random(n) < 0.2] = False
    return sp.csr_matrix(dense.astype(np.float32))


thresholds = st.one_of(
    st.floats(0.05, 1.0),
    st.sampled_from([0.5, 0.65, 1.0, math.sqrt(4 / 6), math.sqrt(1 / 2), 2 / 3]),
)


def assert_same(left, right):
    np.testing.assert_array_equal(left[0], right[0])
    np.testing.assert_array_equal(left[1], right[1])
    np.testing.assert_allclose(left[2], right[2], rtol=0, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    matrix=profile_matrices(),
    threshold=thresholds,
    limit=st.integers(1, 8),
    block_size=st.integers(1, 50),
)
def test_equals_brute_force(matrix, threshold, limit, block_size):
    ours = candidate_arrays(matrix, threshold, limit, block_size)
    reference = dense_reference(matrix, threshold, limit)
    assert_same(ours, reference)
    assert ours[0].dtype == np.int64 and ours[1].dtype == np.int64
    assert ours[2].dtype == np.float64
    expected = naive(matrix, threshold, limit)
    assert list(zip(ours[0].tolist(), ours[1].tolist(), strict=True)) == [
        (i, j) for i, j, _ in expected
    ]
    np.testing.assert_allclose(ours[2], [c for _, _, c in expected], rtol=0, atol=1e-12)
    # the contract, stated directly
    source, candidate, similarity = ours
    assert np.all(similarity >= threshold) and np.all(similarity <= 1.0 + 1e-12)
    assert np.all(source != candidate)
    assert np.all(np.bincount(source, minlength=1) <= limit)
    order = np.lexsort((candidate, -similarity, source))
    np.testing.assert_array_equal(order, np.arange(len(source)))
    empty = np.flatnonzero(np.diff(matrix.indptr) == 0)
    assert not np.isin(source, empty).any() and not np.isin(candidate, empty).any()


@settings(max_examples=60, deadline=None)
@given(matrix=profile_matrices(max_columns=90), threshold=thresholds, limit=st.integers(1, 8))
def test_long_rows_equal_brute_force(matrix, threshold, limit):
    """Rows of 20 to 80 columns: lengths within 5% share a group, whose least length sets T."""
    assert_same(
        candidate_arrays(matrix, threshold, limit, 7), dense_reference(matrix, threshold, limit)
    )


def test_the_shortest_row_of_a_length_group_sets_its_prefixes():
    """Rows of 40 and 42 columns share a length group. Rows 0 and 1 (40 each) share 26 columns,
    exactly the overlap e = 0.64 needs at 40, and those are the most frequent columns, so they sit
    at the end of the prefixes: sized for 42 columns, the prefixes would miss the pair."""
    shared = list(range(26))
    rows = [shared + list(range(26, 40)), shared + list(range(40, 54))]
    rows += [shared + list(range(54 + 16 * k, 70 + 16 * k)) for k in range(10)]  # 42 each
    matrix = binary(rows, 54 + 160)
    ours = candidate_arrays(matrix, 0.64, 5, 4)
    assert list(zip(ours[0].tolist(), ours[1].tolist(), strict=True)) == [(0, 1), (1, 0)]
    assert_same(ours, dense_reference(matrix, 0.64, 5))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.5, 0.65, 0.8])
def test_length_groups_spanning_several_lengths(seed, threshold):
    rng = np.random.default_rng(seed)
    dense = rng.random((60, 100)) < rng.uniform(0.3, 0.6, size=(60, 1))
    dense[30:] = dense[:30] | (rng.random((30, 100)) < 0.05)  # near-duplicates, longer by a few
    matrix = sp.csr_matrix(dense.astype(np.float32))
    assert len(np.unique(np.diff(matrix.indptr))) > 20
    ours = candidate_arrays(matrix, threshold, 6, 16)
    assert len(ours[0]) > 0
    assert_same(ours, dense_reference(matrix, threshold, 6))


@settings(max_examples=40, deadline=None)
@given(matrix=profile_matrices(), threshold=thresholds, block_size=st.integers(1, 45))
def test_block_size_does_not_change_the_result(matrix, threshold, block_size):
    one_block = candidate_arrays(matrix, threshold, 5, max(matrix.shape[0], 1))
    assert_same(candidate_arrays(matrix, threshold, 5, block_size), one_block)
    assert_same(dense_reference(matrix, threshold, 5, block_size=block_size), one_block)


@settings(max_examples=40, deadline=None)
@given(matrix=profile_matrices(), seed=st.integers(0, 1000))
def test_pair_similarity_is_the_cosine(matrix, seed):
    n = matrix.shape[0]
    rng = np.random.default_rng(seed)
    a, b = rng.integers(max(n, 1), size=(2, 30)) if n else (np.zeros(0, int),) * 2
    dense = matrix.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nan_to_num((dense[a] * dense[b]).sum(1) / (norms[a] * norms[b]))
    np.testing.assert_allclose(pair_similarity(matrix, a, b), expected, rtol=0, atol=1e-12)


def test_known_cosines():
    matrix = binary([[0, 1], [0, 1, 2], [3], [], [0, 1]], 4)
    cosine = math.sqrt(4 / 6)  # 2 / sqrt(6), as the module computes it
    source, candidate, similarity = candidate_arrays(matrix, 0.8, 10, 2)
    assert list(zip(source.tolist(), candidate.tolist(), strict=True)) == [
        (0, 4),  # duplicates first: cosine 1
        (0, 1),
        (1, 0),  # ties: candidate row ascending
        (1, 4),
        (4, 0),
        (4, 1),
    ]
    np.testing.assert_allclose(similarity, [1, cosine, cosine, cosine, 1, cosine], atol=1e-15)
    # the threshold is inclusive, and just above the cosine it drops the pair
    assert len(candidate_arrays(matrix, cosine, 10, 3)[0]) == 6
    assert candidate_arrays(matrix, np.nextafter(cosine, 1), 10, 3)[0].tolist() == [0, 4]
    np.testing.assert_allclose(
        pair_similarity(matrix, [0, 0, 2, 3], [1, 2, 2, 3]), [cosine, 0, 1, 0]
    )


def test_equal_cosines_are_equal_floats_so_ties_break_by_row():
    # From row 0 (3 columns), row 1 shares 3 of 9 and row 2 its only one: both cos^2 = 1/3, yet
    # 3 / sqrt(27) < 1 / sqrt(3) in floats, which would put row 2 first.
    matrix = binary([[0, 1, 2], list(range(9)), [0]], 9)
    source, candidate, similarity = candidate_arrays(matrix, 0.5, 2, 3)
    pairs = list(zip(source.tolist(), candidate.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (1, 0), (2, 0)]
    assert np.all(similarity == math.sqrt(1 / 3))


def test_max_per_source_keeps_the_best_and_breaks_ties_by_row():
    # row 0 = {0, 1}; rows 1..5 = {0, 1, 2}: all at the same cosine; row 6 = {0, 1} (cosine 1)
    matrix = binary([[0, 1]] + [[0, 1, 2]] * 5 + [[0, 1]], 3)
    source, candidate, _ = candidate_arrays(matrix, 0.5, 3, 4)
    assert candidate[source == 0].tolist() == [6, 1, 2]
    assert candidate[source == 3].tolist() == [1, 2, 4]


def test_ties_at_the_cap_go_to_the_more_popular_candidate_not_the_lower_id():
    # Same catalog: rows 1..5 tie for source 0 behind row 6. The popular rows 5 and 4 must win
    # the two places left, although an id order would pick rows 1 and 2.
    matrix = binary([[0, 1]] + [[0, 1, 2]] * 5 + [[0, 1]], 3)
    popularity = np.array([0, 1, 0, 0, 7, 9, 0], dtype=float)
    cut = CutStats()
    source, candidate, _ = candidate_arrays(matrix, 0.5, 3, 4, tie_break=popularity, cut=cut)
    assert candidate[source == 0].tolist() == [6, 5, 4]
    # Source 3's candidates all tie (cosine 1 with rows 1..5): the popular ones first.
    assert candidate[source == 3].tolist() == [5, 4, 1]
    # Every source had more than 3 candidates; its cut fell inside a tie of similarity.
    assert (cut.sources, cut.capped) == (7, 7)
    assert cut.cut_in_tie == 7
    assert cut.to_dict()["cut_in_tie_share"] == 1.0


def test_a_cut_between_distinct_similarities_is_not_counted_as_a_tie():
    # Source 0 = {0, 1}: row 1 identical (cosine 1), rows 2 and 3 at cosine 0.82 and 0.71.
    matrix = binary([[0, 1], [0, 1], [0, 1, 2], [0, 1, 2, 3]], 4)
    cut = CutStats()
    candidate_arrays(matrix, 0.5, 2, 4, cut=cut)
    source_zero_tie = cut.cut_in_tie
    assert cut.capped >= 1
    # source 0 keeps rows 1 and 2 and drops row 3 at a lower cosine: no tie for it.
    source, candidate, _ = candidate_arrays(matrix, 0.5, 2, 4)
    assert candidate[source == 0].tolist() == [1, 2]
    assert source_zero_tie < cut.capped


def test_tie_break_values_are_checked():
    matrix = binary([[0, 1], [0, 1]], 2)
    with pytest.raises(ValueError, match="tie_break"):
        candidate_arrays(matrix, 0.5, 3, 4, tie_break=np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        candidate_arrays(matrix, 0.5, 3, 4, tie_break=np.array([1.0, np.nan]))


def test_a_frequent_value_alone_never_pairs():
    """Synthetic-like: every video has one of two types; related videos also share rare values.
    Sharing the type alone gives a low cosine, and none of those pairs may pass a high e."""
    rng = np.random.default_rng(7)
    n, rare = 400, 300
    rows = []
    for video in range(n):
        series = video // 4  # groups of four related videos share three rare values
        own = {2 + (3 * series + k) % rare for k in range(3)}
        own |= {2 + int(v) for v in rng.integers(rare, size=2)}
        rows.append(sorted({video % 2} | own))
    matrix = binary(rows, 2 + rare)
    source, candidate, similarity = candidate_arrays(matrix, 0.65, 50, 64)
    assert_same((source, candidate, similarity), dense_reference(matrix, 0.65, 50))
    overlap = np.asarray(matrix[source].multiply(matrix[candidate]).sum(axis=1)).ravel()
    assert np.all(overlap >= 2)  # never the type alone
    assert set(zip(source.tolist(), candidate.tolist(), strict=True)) >= {
        (4 * s + a, 4 * s + b) for s in range(n // 4) for a in (0, 2) for b in (0, 2) if a != b
    }  # same type, same series: always related


def test_shared_values_are_the_common_tokens_in_column_order():
    matrix = binary([[0, 2, 3], [0, 1, 3], [4], []], 5)
    tokens = ["video_type=movie", "tags=a", "tags=b", "actors=x", "staff=y"]
    reasons = shared_values(matrix, np.array([0, 1, 0, 3]), np.array([1, 0, 2, 0]), tokens)
    assert reasons == [
        ["video_type=movie", "actors=x"],
        ["video_type=movie", "actors=x"],
        [],
        [],
    ]
    assert shared_values(matrix, np.zeros(0, int), np.zeros(0, int), tokens) == []
    with pytest.raises(ValueError):
        shared_values(matrix, [0], [1], tokens[:2])


def test_candidate_pairs_names_the_videos_and_reports_progress():
    matrix = binary([[0, 1], [0, 1, 2], [3], [], [0, 1]], 4)
    ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    done = []
    pairs = candidate_pairs(ids, matrix, 0.8, 10, 2, progress=done.append)
    assert done == [2, 2, 1]
    assert list(pairs.columns) == ["source_video_id", "candidate_video_id", "content_similarity"]
    assert pairs["content_similarity"].dtype == np.float64
    assert pairs[["source_video_id", "candidate_video_id"]].values.tolist()[:3] == [
        ["a", "e"],
        ["a", "b"],
        ["b", "a"],
    ]
    with pytest.raises(ValueError):
        candidate_pairs(ids[:2], matrix, 0.8, 10, 2)


def test_candidate_summary():
    pairs = pd.DataFrame(
        {
            "source_video_id": ["a", "a", "a", "b"],
            "candidate_video_id": ["b", "c", "d", "a"],
            "content_similarity": [1.0, 0.9, 0.7, 1.0],
        }
    )
    summary = candidate_summary(pairs, n_videos=4, few=2)
    assert summary["pairs"] == 4
    assert summary["sources_with_candidates"] == 2
    assert summary["coverage"] == 0.5
    assert summary["pairs_per_source_mean"] == 1.0  # counts 3, 1, 0, 0
    assert summary["pairs_per_source_median"] == 0.5
    assert summary["few_candidates_share"] == 0.75
    assert summary["similarity_min"] == 0.7 and summary["similarity_median"] == 0.95
    empty = candidate_summary(pairs.iloc[:0], n_videos=3, few=1)
    assert empty["pairs"] == 0 and empty["coverage"] == 0 and empty["few_candidates_share"] == 1
    assert math.isnan(empty["similarity_median"])


def test_on_the_toy_catalog(config, toy_world):
    videos = toy_world.videos
    vocabulary = fit_vocabulary(
        videos, config.dataset.video_attributes, config.candidates.top_k_values
    )
    matrix = encode_profiles(videos, vocabulary)
    settings_ = config.candidates
    ours = candidate_arrays(matrix, settings_.threshold, settings_.max_per_source, 16)
    assert len(ours[0]) > 0
    assert_same(ours, dense_reference(matrix, settings_.threshold, settings_.max_per_source))


@pytest.mark.parametrize(
    "threshold, limit, block_size", [(0.0, 5, 10), (1.5, 5, 10), (0.5, 0, 10), (0.5, 5, 0)]
)
def test_bad_arguments(threshold, limit, block_size):
    with pytest.raises(ValueError):
        candidate_arrays(binary([[0]], 1), threshold, limit, block_size)


@settings(max_examples=60, deadline=None)
@given(
    matrix=profile_matrices(),
    threshold=st.floats(0.4, 1.0),
    minimum=st.integers(1, 6),
    pool=st.integers(1, 8),
    block_size=st.integers(1, 50),
)
def test_fill_offers_short_rows_their_next_most_similar(
    matrix, threshold, minimum, pool, block_size
):
    floor = threshold / 2
    gated = candidate_arrays(matrix, threshold, 100, block_size)
    filled = fill_arrays(matrix, gated, minimum, floor, pool, block_size)
    n = matrix.shape[0]
    before = np.bincount(gated[0], minlength=n)
    gated_pairs = set(zip(*gated[:2], strict=True))
    # Only short rows get pairs, never a gated pair again.
    assert (np.bincount(filled[0], minlength=n)[before >= minimum] == 0).all()
    assert not set(zip(*filled[:2], strict=True)) & gated_pairs
    # They are the brute-force best at the floor after the gated ones: max(pool, missing) of them.
    expected = []
    for i in np.flatnonzero(before < minimum):
        best = [
            (j, c) for r, j, c in naive(matrix, floor, 200) if r == i and (r, j) not in gated_pairs
        ]
        expected += [(i, j) for j, _ in best[: max(pool, minimum - before[i])]]
    assert list(zip(*filled[:2], strict=True)) == expected
    assert (filled[2] >= floor - 1e-12).all()
    assert (filled[2] < threshold + 1e-12).all()


def test_fill_is_off_at_zero_and_keeps_a_row_without_columns_empty():
    matrix = binary([[0, 1], [0, 2], [1, 2], []], 3)
    gated = candidate_arrays(matrix, 0.9, 10, 4)
    assert len(gated[0]) == 0
    assert len(fill_arrays(matrix, gated, 0, 0.3, 5, 4)[0]) == 0
    source, candidate, similarity = fill_arrays(matrix, gated, 1, 0.3, 1, 4)
    assert source.tolist() == [0, 1, 2]  # one each; row 3 has nothing to be similar by
    np.testing.assert_allclose(similarity, 0.5)
    assert candidate.tolist() == [1, 0, 0]  # ties by the lower row
    assert fill_arrays(matrix, gated, 1, 0.3, 5, 4)[0].tolist() == [0, 0, 1, 1, 2, 2]
