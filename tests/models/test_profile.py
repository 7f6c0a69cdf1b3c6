"""Top-K multi-hot profiles: a deterministic vocabulary, single and multi attributes, round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.profile import (
    ProfileVocabulary,
    encode_profiles,
    fit_vocabulary,
    matrix_from_indices,
    profile_indices,
)

ATTRIBUTES = {"video_type": "single", "tags": "multi"}


@pytest.fixture
def videos() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": ["v0", "v1", "v2", "v3", "v4"],
            "video_type": ["movie", "clip", "movie", None, "clip"],
            "tags": [
                ["b", "a", "a"],  # a repeated value counts once for the video
                ["c", "a"],
                [],
                np.array(["b", "d"]),  # arrays as Parquet hands them back
                None,
            ],
        }
    )


def test_vocabulary_counts_videos_and_breaks_ties_by_value(videos):
    vocabulary = fit_vocabulary(videos, ATTRIBUTES, top_k=2)
    frame = vocabulary.to_frame()
    assert list(frame.columns) == ["column", "attribute", "kind", "value", "videos"]
    assert frame["column"].tolist() == [0, 1, 2, 3]
    assert frame["attribute"].tolist() == ["video_type", "video_type", "tags", "tags"]
    # clip and movie tie at 2 (ascending value); a and b tie at 2, c and d (1 each) are cut
    assert frame["value"].tolist() == ["clip", "movie", "a", "b"]
    assert frame["videos"].tolist() == [2, 2, 2, 2]
    assert frame["kind"].tolist() == ["single", "single", "multi", "multi"]
    assert vocabulary.tokens() == ["video_type=clip", "video_type=movie", "tags=a", "tags=b"]
    assert vocabulary.attribute_of_column.tolist() == [0, 0, 1, 1]
    assert vocabulary.n_columns == 4


def test_vocabulary_orders_by_frequency_within_the_configured_attribute_order(videos):
    videos = videos.assign(tags=[["z", "y"], ["z"], ["z"], [], ["y", "x"]])
    vocabulary = fit_vocabulary(videos, {"tags": "multi", "video_type": "single"}, top_k=10)
    assert vocabulary.tokens() == [
        "tags=z",
        "tags=y",
        "tags=x",
        "video_type=clip",
        "video_type=movie",
    ]
    assert vocabulary.attributes == ("tags", "video_type")


def test_vocabulary_is_deterministic_under_row_order(videos):
    shuffled = videos.sample(frac=1.0, random_state=3).reset_index(drop=True)
    left = fit_vocabulary(videos, ATTRIBUTES, top_k=3).to_frame()
    right = fit_vocabulary(shuffled, ATTRIBUTES, top_k=3).to_frame()
    pd.testing.assert_frame_equal(left, right)


def test_encode_single_and_multi_with_empty_none_and_unknown_values(videos):
    vocabulary = fit_vocabulary(videos, ATTRIBUTES, top_k=2)  # clip, movie, a, b
    matrix = encode_profiles(videos, vocabulary)
    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.dtype == np.float32 and matrix.shape == (5, 4)
    assert matrix.has_sorted_indices
    dense = matrix.toarray()
    assert set(np.unique(dense)) <= {0.0, 1.0}
    expected = [
        [0, 1, 1, 1],  # movie, a (twice in the list), b
        [1, 0, 1, 0],  # clip, a; c is outside the vocabulary
        [0, 1, 0, 0],  # movie, empty list
        [0, 0, 0, 1],  # None type, b; d is outside
        [1, 0, 0, 0],  # clip, None tags
    ]
    np.testing.assert_array_equal(dense, np.array(expected, dtype=np.float32))


def test_encode_other_videos_onto_a_fitted_vocabulary(videos):
    vocabulary = fit_vocabulary(videos, ATTRIBUTES, top_k=2)
    new = pd.DataFrame(
        {"video_id": ["n0", "n1"], "video_type": ["trailer", "movie"], "tags": [["q"], ["b", "b"]]}
    )
    np.testing.assert_array_equal(
        encode_profiles(new, vocabulary).toarray(), [[0, 0, 0, 0], [0, 1, 0, 1]]
    )


def test_profile_indices_round_trip(videos):
    matrix = encode_profiles(videos, fit_vocabulary(videos, ATTRIBUTES, top_k=10))
    indices = profile_indices(matrix)
    # columns: clip, movie, a, b, c, d
    assert indices == [[1, 2, 3], [0, 2, 4], [1], [3, 5], [0]]
    assert all(isinstance(column, int) for row in indices for column in row)
    back = matrix_from_indices(indices, matrix.shape[1])
    assert back.dtype == np.float32 and back.has_sorted_indices
    assert (back != matrix).nnz == 0


def test_matrix_from_indices_collapses_duplicates_and_checks_range():
    matrix = matrix_from_indices([[2, 0, 2], [], [1]], 3)
    np.testing.assert_array_equal(matrix.toarray(), [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    assert matrix.nnz == 3
    assert matrix_from_indices([], 4).shape == (0, 4)
    with pytest.raises(ValueError):
        matrix_from_indices([[3]], 3)


def test_vocabulary_frame_round_trip_through_parquet(videos, tmp_path):
    vocabulary = fit_vocabulary(videos, ATTRIBUTES, top_k=3)
    path = tmp_path / "vocabulary.parquet"
    vocabulary.to_frame().to_parquet(path, index=False)
    back = ProfileVocabulary.from_frame(pd.read_parquet(path), attributes=list(ATTRIBUTES))
    pd.testing.assert_frame_equal(back.frame, vocabulary.frame)
    assert back.attributes == vocabulary.attributes
    assert back.tokens() == vocabulary.tokens()
    assert (encode_profiles(videos, back) != encode_profiles(videos, vocabulary)).nnz == 0


def test_from_frame_rejects_a_broken_table(videos):
    frame = fit_vocabulary(videos, ATTRIBUTES, top_k=3).to_frame()
    with pytest.raises(ValueError, match="lacks columns"):
        ProfileVocabulary.from_frame(frame.drop(columns="videos"))
    with pytest.raises(ValueError, match="0..n-1"):
        ProfileVocabulary.from_frame(frame.iloc[::-1])
    with pytest.raises(ValueError, match="not in"):
        ProfileVocabulary.from_frame(frame, attributes=["tags"])


def test_an_attribute_without_values_keeps_its_position():
    videos = pd.DataFrame({"video_id": ["a", "b"], "staff": [[], None], "tags": [["x"], ["x"]]})
    vocabulary = fit_vocabulary(videos, {"staff": "multi", "tags": "multi"}, top_k=5)
    assert vocabulary.tokens() == ["tags=x"]
    assert vocabulary.attribute_of_column.tolist() == [1]
    np.testing.assert_array_equal(encode_profiles(videos, vocabulary).toarray(), [[1], [1]])


def test_bad_arguments(videos):
    with pytest.raises(ValueError):
        fit_vocabulary(videos, ATTRIBUTES, top_k=0)
    with pytest.raises(ValueError, match="kind"):
        fit_vocabulary(videos, {"tags": "many"}, top_k=3)
