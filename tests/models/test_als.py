"""Tests of per-objective ALS: the item-vector contract for both engines, planted structure, AUC on
a holdout, engine agreement, determinism and errors.

Data: 300 users x 120 videos in 6 planted groups, each user mostly inside one group.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.als import (
    AlsModel,
    AlsParams,
    auc_at_positions,
    auc_on_holdout,
    chance_overlap,
    coded_interaction_matrix,
    fit_als,
    fit_als_matrix,
    interaction_matrix,
    neighbour_overlap,
    pair_similarity,
    sorted_codes,
    top_k_neighbours,
)
from models.vectors import ItemVectors
from tests.models.vector_contract import ItemVectorContract

# Smaller than the paper's values: 3,000 interactions do not need rank 30 and alpha 100.
PARAMS = AlsParams(rank=16, max_iter=15, reg_param=0.01, alpha=20.0)
SEED = 7
N_GROUPS = 6


def planted_interactions(
    seed: int = 0, n_users: int = 300, n_videos: int = 120, per_user: int = 12, inside: float = 0.85
) -> tuple[pd.DataFrame, pd.Series]:
    """Interactions [user_id, video_id, value] and each video's planted group."""
    rng = np.random.default_rng(seed)
    video_ids = np.array([f"v{i:03d}" for i in range(n_videos)])
    video_group = np.arange(n_videos) % N_GROUPS
    user_group = rng.integers(0, N_GROUPS, n_users)
    rows = []
    for user, group in enumerate(user_group):
        n_inside = rng.binomial(per_user, inside)
        own = rng.choice(np.flatnonzero(video_group == group), n_inside, replace=False)
        other = rng.choice(np.flatnonzero(video_group != group), per_user - n_inside, replace=False)
        for video in np.concatenate([own, other]):
            rows.append((f"u{user:03d}", video_ids[video], float(rng.integers(1, 4))))
    interactions = pd.DataFrame(rows, columns=["user_id", "video_id", "value"])
    return interactions, pd.Series(video_group, index=video_ids, name="group")


@pytest.fixture(scope="module")
def planted() -> dict:
    """The planted data split into train and a holdout of two interactions per user."""
    interactions, groups = planted_interactions()
    held = interactions.groupby("user_id").sample(n=2, random_state=0).index
    return {
        "groups": groups,
        "train": interactions.drop(held),
        "holdout": interactions.loc[held],
    }


@pytest.fixture(scope="module")
def implicit_model(planted) -> AlsModel:
    return fit_als(planted["train"], PARAMS, "implicit", seed=SEED)


@pytest.fixture(scope="module")
def spark_model(planted, spark) -> AlsModel:
    return fit_als(planted["train"], PARAMS, "spark", seed=SEED, spark=spark)


def same_group_share(vectors: ItemVectors, groups: pd.Series, k: int = 10) -> float:
    """Share of each video's top-k neighbours that are in its own group."""
    label = groups.loc[vectors.video_ids].to_numpy()
    top = top_k_neighbours(vectors, vectors.video_ids, k)
    return float((label[top] == label[:, None]).mean())


def same_group_chance(groups: pd.Series) -> float:
    """same_group_share of a random ranking."""
    sizes = groups.value_counts().to_numpy()
    n = len(groups)
    return float((sizes * (sizes - 1)).sum() / (n * (n - 1)))


class EngineChecks:
    """What both engines must show on the planted data; `model` is the engine's fit."""

    def test_model_describes_its_fit(self, model, planted):
        train = planted["train"]
        assert model.params == PARAMS
        assert model.item_factors.shape == (train["video_id"].nunique(), PARAMS.rank)
        assert model.user_factors.shape == (train["user_id"].nunique(), PARAMS.rank)
        assert list(model.user_ids) == sorted(train["user_id"].unique())
        assert list(model.video_ids) == sorted(train["video_id"].unique())

    def test_neighbours_share_the_planted_group(self, model, planted):
        share = same_group_share(model.item_vectors, planted["groups"])
        chance = same_group_chance(planted["groups"])
        # measured: implicit 0.71, Spark 0.99, chance 0.16
        assert share >= 3 * chance, (share, chance)

    def test_auc_on_holdout(self, model, planted):
        auc = auc_on_holdout(model, planted["train"], planted["holdout"], np.random.default_rng(0))
        assert auc > 0.7  # measured: implicit 0.84, Spark 0.87 (600 held-out pairs)

    def test_auc_reads_the_seen_pairs_from_the_fit_matrix_as_from_the_frame(self, model, planted):
        # The fit's matrix holds the training pairs (every value > 0 here): the AUC drawn with
        # the pairs taken from it equals the one drawn with the pairs looked up in the frame.
        assert model.train_matrix is not None
        args = (planted["train"], planted["holdout"])
        from_matrix = auc_on_holdout(model, *args, np.random.default_rng(5))
        without = dataclasses.replace(model, train_matrix=None)
        assert from_matrix == auc_on_holdout(without, *args, np.random.default_rng(5))


class TestImplicitEngine(ItemVectorContract, EngineChecks):
    @pytest.fixture
    def model(self, implicit_model):
        return implicit_model

    @pytest.fixture
    def fitted(self, implicit_model, planted):
        return implicit_model.item_vectors, planted["train"]["video_id"].unique()

    def test_engine_name(self, implicit_model):
        assert implicit_model.engine == "implicit"

    def test_same_seed_same_vectors(self, planted, implicit_model):
        again = fit_als(planted["train"], PARAMS, "implicit", seed=SEED)
        assert np.array_equal(again.item_vectors.video_ids, implicit_model.item_vectors.video_ids)
        assert np.array_equal(again.item_vectors.vectors, implicit_model.item_vectors.vectors)

    def test_progress_and_training_loss(self, planted):
        calls = []
        model = fit_als(
            planted["train"],
            PARAMS,
            seed=SEED,
            progress=lambda iteration, seconds, loss: calls.append((iteration, loss)),
            calculate_training_loss=True,
        )
        assert [iteration for iteration, _ in calls] == list(range(PARAMS.max_iter))
        assert np.isfinite(model.training_loss) and model.training_loss > 0

    def test_training_loss_is_implicits_own(self, planted):
        # The loss computed once after the fit equals what implicit reports after its last
        # iteration when asked to compute it every iteration.
        from implicit.cpu.als import AlternatingLeastSquares

        ours = fit_als(planted["train"], PARAMS, seed=SEED, calculate_training_loss=True)
        matrix, _, _ = interaction_matrix(planted["train"])
        losses = []
        AlternatingLeastSquares(
            factors=PARAMS.rank,
            iterations=PARAMS.max_iter,
            regularization=PARAMS.reg_param,
            alpha=PARAMS.alpha,
            calculate_training_loss=True,
            random_state=SEED,
        ).fit(matrix, show_progress=False, callback=lambda _i, _s, loss: losses.append(loss))
        assert ours.training_loss == pytest.approx(losses[-1], rel=1e-5)


@pytest.mark.spark
class TestSparkEngine(ItemVectorContract, EngineChecks):
    @pytest.fixture
    def model(self, spark_model):
        return spark_model

    @pytest.fixture
    def fitted(self, spark_model, planted):
        return spark_model.item_vectors, planted["train"]["video_id"].unique()

    def test_engine_name_and_no_loss(self, spark_model):
        assert spark_model.engine == "spark"
        assert spark_model.training_loss is None

    def test_engines_agree_on_neighbours(self, implicit_model, spark_model):
        video_ids = implicit_model.video_ids
        overlap = neighbour_overlap(
            implicit_model.item_vectors, spark_model.item_vectors, 10, video_ids
        )
        chance = chance_overlap(len(video_ids), 10)
        # measured 0.47-0.65 depending on the parameters; chance 0.084. Not higher: reg_param
        # means something else in each engine (see models/als.py).
        assert overlap >= 3 * chance, (overlap, chance)


def test_paper_click_params_find_series_in_the_toy_world(toy_world, config):
    """With the paper's click parameters, neighbours share a series far more often than chance."""
    click = next(objective for objective in config.objectives if objective.name == "click")
    params = AlsParams(**dataclasses.asdict(click.als))
    events = toy_world.events
    clicks = events.loc[events["clicked"].astype(bool), ["user_id", "video_id"]].assign(value=1.0)
    model = fit_als(clicks, params, seed=config.seed)

    series = toy_world.truth["videos"].set_index("video_id")["series_id"]
    series = series.loc[model.video_ids].to_numpy()
    in_series = pd.notna(series)
    top = top_k_neighbours(model.item_vectors, model.video_ids, 10)
    share = (series[top][in_series] == series[in_series][:, None]).mean()
    sizes = pd.Series(series[in_series]).value_counts().to_numpy()
    chance = (sizes * (sizes - 1)).sum() / (in_series.sum() * (len(series) - 1))
    assert share >= 3 * chance, (share, chance)  # measured 0.53 vs 0.077


def test_interaction_matrix_sums_repeats_and_sorts_ids():
    interactions = pd.DataFrame(
        {
            "user_id": [2, 1, 2, 1, 3],
            "video_id": ["b", "a", "b", "c", "a"],
            "value": [1.0, 2.0, 3.0, 0.0, 1.5],
        }
    )
    matrix, user_ids, video_ids = interaction_matrix(interactions)
    assert list(user_ids) == [1, 2, 3]
    assert list(video_ids) == ["a", "b"]  # "c" has only a zero value
    assert matrix.dtype == np.float32
    assert matrix.toarray().tolist() == [[2.0, 0.0], [0.0, 4.0], [1.5, 0.0]]


def test_a_matrix_cut_from_a_coded_set_is_the_one_built_from_its_ids(planted):
    # The train step encodes a training set's ids once and cuts each objective's matrix from
    # the codes: users and videos absent from the cut (or with only zero values) must go, in
    # order, exactly as interaction_matrix drops them.
    both = pd.concat([planted["train"], planted["holdout"]], ignore_index=True)
    both.loc[::7, "value"] = 0.0
    users, user_ids = sorted_codes(both["user_id"])
    videos, video_ids = sorted_codes(both["video_id"])
    rows = (np.random.default_rng(3).random(len(both)) < 0.4) & ~(
        both["video_id"].isin(video_ids[:5]) | both["user_id"].isin(user_ids[:5])
    )
    coded = coded_interaction_matrix(
        users[rows], videos[rows], both["value"].to_numpy()[rows], user_ids, video_ids
    )
    matrix, expected_users, expected_videos = interaction_matrix(both[rows])
    assert list(coded.user_ids) == list(expected_users)
    assert list(coded.video_ids) == list(expected_videos)
    assert len(coded.video_ids) < len(video_ids) and len(coded.user_ids) < len(user_ids)
    assert (coded.matrix != matrix).nnz == 0 and coded.matrix.dtype == matrix.dtype
    kept_users = coded.user_rows[coded.user_rows >= 0]
    assert list(user_ids[coded.user_rows >= 0]) == list(coded.user_ids[kept_users])


def test_the_auc_at_positions_is_the_auc_on_the_ids(implicit_model, planted):
    holdout = pd.concat(
        [planted["holdout"], pd.DataFrame({"user_id": [-1], "video_id": ["unknown"]})]
    )
    users = pd.Index(implicit_model.user_ids).get_indexer(holdout["user_id"])
    videos = pd.Index(implicit_model.video_ids).get_indexer(holdout["video_id"])
    by_positions = auc_at_positions(implicit_model, users, videos, np.random.default_rng(9))
    by_ids = auc_on_holdout(implicit_model, planted["train"], holdout, np.random.default_rng(9))
    assert by_positions == by_ids


def test_a_missing_id_in_a_coded_set_is_named():
    users, user_ids = sorted_codes(pd.Series(["u1", None, "u2"]))
    videos, video_ids = sorted_codes(pd.Series(["a", "b", "a"]))
    with pytest.raises(ValueError, match="user_id or video_id is missing"):
        coded_interaction_matrix(users, videos, np.ones(3), user_ids, video_ids)


def test_fit_on_a_built_matrix_is_the_fit_on_the_frame(implicit_model, planted):
    matrix, user_ids, video_ids = interaction_matrix(planted["train"])
    again = fit_als_matrix(matrix, user_ids, video_ids, PARAMS, "implicit", seed=SEED)
    np.testing.assert_array_equal(again.item_factors, implicit_model.item_factors)
    np.testing.assert_array_equal(again.video_ids, implicit_model.video_ids)


def test_pair_similarity_aligned_and_nan_for_unknown(implicit_model):
    ids = implicit_model.video_ids
    pairs = pd.DataFrame(
        {
            "source_video_id": [ids[0], ids[1], "unknown"],
            "candidate_video_id": [ids[1], ids[1], ids[0]],
        },
        index=[10, 20, 30],
    )
    scores = pair_similarity(implicit_model, pairs)
    assert list(scores.index) == [10, 20, 30]
    assert scores[20] == pytest.approx(1.0, abs=1e-5)
    assert np.isnan(scores[30])
    assert -1 <= scores[10] <= 1


def test_overlap_with_itself_is_one_and_chance_is_k_over_n(implicit_model):
    vectors = implicit_model.item_vectors
    assert neighbour_overlap(vectors, vectors, 10, vectors.video_ids) == pytest.approx(1.0)
    assert chance_overlap(101, 10) == pytest.approx(0.1)


def test_empty_interactions_raise():
    empty = pd.DataFrame({"user_id": [], "video_id": [], "value": []})
    with pytest.raises(ValueError, match="empty"):
        fit_als(empty, PARAMS, seed=SEED)


def test_unknown_engine_raises_naming_the_engines(planted):
    with pytest.raises(ValueError, match="implicit, spark"):
        fit_als(planted["train"], PARAMS, "torch", seed=SEED)


def test_bad_values_and_missing_columns_raise():
    with pytest.raises(ValueError, match="NaN"):
        interaction_matrix(pd.DataFrame({"user_id": [1], "video_id": ["a"], "value": [np.nan]}))
    with pytest.raises(ValueError, match="value"):
        interaction_matrix(pd.DataFrame({"user_id": [1], "video_id": ["a"]}))


def test_membership_by_binary_search_matches_isin():
    from models.als import _in_sorted

    rng = np.random.default_rng(0)
    seen = np.sort(rng.integers(0, 10_000, 3_000))  # with repeats, as auc_on_holdout has them
    assert len(np.unique(seen)) < len(seen)
    values = rng.integers(-5, 10_005, 20_000)
    assert (_in_sorted(seen, values) == np.isin(values, seen)).all()
    assert not _in_sorted(np.array([], dtype=np.int64), values[:3]).any()
