"""The two-tower model: the item vector contract, cold videos placed by their profile,
repeatable fits, early stopping, save and load, input errors.

One planted catalog: series of videos sharing actors unique to the series (plus noise type and
tags), users who each like one series, and one video per series that no one has watched.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models.two_tower import (
    TwoTowerModel,
    TwoTowerParams,
    build_towers,
    encode_items,
    encode_users,
    fit_two_tower,
    make_spec,
    sample_pairs,
    training_arrays,
)
from tests.models.vector_contract import ItemVectorContract

N_SERIES, PER_SERIES, USERS_PER_SERIES, WATCHES = 6, 8, 16, 8
CATEGORICAL, NUMERIC = ["age_bucket", "gender"], ["level"]
PARAMS = TwoTowerParams(
    tower_units=(32, 16),
    embedding_dim=8,
    loss="binary_crossentropy",
    optimizer="sgd",
    learning_rate=0.05,
    batch_size=128,
    max_epochs=60,
    # The loss sits near its base rate for the first few epochs on this small world; with a
    # patience of 3, 2 of 8 world and model seeds stopped there (patience 5: none of 8).
    early_stopping_patience=5,
    validation_share=0.1,
    negatives_per_positive=4,
    seed=99,
    one_hot_max_tokens=32,
    initial_cosine_scale=5.0,
    sgd_momentum=0.9,
    id_dropout=0.5,
)


def planted_world(seed: int = 1) -> SimpleNamespace:
    """Attributes: 0 = type (2 values), 1 = actors (3 per series, 2 per video), 2 = tags (10
    values shared by all series, 3 per video). The last video of each series is cold, and so is
    `v_empty`, which has no profile either."""
    rng = np.random.default_rng(seed)
    n_actors, n_tags = 3 * N_SERIES, 10
    attribute_of_column = np.array([0] * 2 + [1] * n_actors + [2] * n_tags)
    rows = []
    for series in range(N_SERIES):
        for episode in range(PER_SERIES):
            actors = 2 + 3 * series + rng.choice(3, size=2, replace=False)
            tags = 2 + n_actors + rng.choice(n_tags, size=3, replace=False)
            profile = np.sort(np.concatenate([[rng.integers(2)], actors, tags]))
            rows.append((f"v{series}_{episode}", series, episode == PER_SERIES - 1, profile))
    items = pd.DataFrame(rows, columns=["video_id", "series", "is_cold", "profile_indices"])
    items.loc[len(items)] = ["v_empty", -1, True, np.array([], dtype=int)]

    watched, held_out = [], []
    every_warm = items.loc[~items["is_cold"], "video_id"].to_numpy()
    for series in range(N_SERIES):
        warm = items.loc[(items["series"] == series) & ~items["is_cold"], "video_id"].to_numpy()
        for u in range(USERS_PER_SERIES):
            age = rng.choice(["18-24", "25-34", None])
            user = (f"u{series}_{u}", age, rng.choice(["f", "m"]), rng.choice([1.0, 3.0, np.nan]))
            watched += [(user[0], video, *user[1:]) for video in rng.choice(warm, WATCHES)]
            watched.append((user[0], rng.choice(every_warm), *user[1:]))  # off-taste noise
            held_out += [(user[0], video, *user[1:]) for video in rng.choice(warm, 2)]
    columns = ["user_id", "video_id", *CATEGORICAL, *NUMERIC]
    return SimpleNamespace(
        items=items,
        positives=pd.DataFrame(watched, columns=columns),
        held_out=pd.DataFrame(held_out, columns=columns),
        attribute_of_column=attribute_of_column,
        n_columns=len(attribute_of_column),
    )


def fit(world: SimpleNamespace, params: TwoTowerParams = PARAMS, **kwargs) -> TwoTowerModel:
    return fit_two_tower(
        world.positives,
        world.items,
        CATEGORICAL,
        NUMERIC,
        world.attribute_of_column,
        world.n_columns,
        params,
        **kwargs,
    )


@pytest.fixture(scope="module")
def world() -> SimpleNamespace:
    return planted_world()


@pytest.fixture(scope="module")
def trained(world) -> SimpleNamespace:
    progress = []
    model = fit(world, progress=lambda epoch, logs: progress.append((epoch, dict(logs))))
    return SimpleNamespace(model=model, vectors=model.item_vectors(), progress=progress)


class TestTwoTower(ItemVectorContract):
    @pytest.fixture
    def fitted(self, trained, world):
        return trained.vectors, world.items["video_id"].to_numpy()


def test_cold_videos_sit_next_to_their_series(trained, world):
    """A cold video's top 3 neighbours hold a series mate for (nearly) every series; by chance
    that happens for 39% of them (1 - C(40,3)/C(47,3)). Measured: 6 of 6 here, and 6 of 6 in 8
    of 8 world and model seeds tried (2 worlds x 4 model seeds). Its mean cosine to its warm series
    mates is far above that to other series' videos (measured gaps 0.59 to 0.92)."""
    vectors, items = trained.vectors, world.items
    series_of = items.set_index("video_id")["series"]
    row_series = series_of[vectors.video_ids].to_numpy()
    row_warm = ~items.set_index("video_id")["is_cold"][vectors.video_ids].to_numpy()
    cold = items[items["is_cold"] & (items["series"] >= 0)]
    hits, gaps = 0, []
    for video, series in zip(cold["video_id"], cold["series"], strict=True):
        hits += bool((series_of[vectors.neighbours(video, 3)["video_id"]] == series).any())
        cosine = vectors.vectors @ vectors.vectors[vectors.positions(np.array([video]))[0]]
        mates, others = row_warm & (row_series == series), row_warm & (row_series != series)
        gaps.append(cosine[mates].mean() - cosine[others].mean())
    assert hits >= 5
    assert min(gaps) > 0.3


def test_held_out_positives_outrank_random_videos(trained, world):
    rng = np.random.default_rng(0)
    assert trained.model.auc(world.held_out, world.items, rng) > 0.8  # measured 0.90; chance 0.5
    with pytest.raises(ValueError, match="no held-out"):
        trained.model.auc(world.held_out.iloc[:0], world.items, rng)


def test_early_stopping_and_history(trained):
    model = trained.model
    assert 1 <= model.epochs_run < PARAMS.max_epochs
    assert len(model.history["loss"]) == len(model.history["val_loss"]) == model.epochs_run
    assert [epoch for epoch, _ in trained.progress] == list(range(model.epochs_run))
    assert {"loss", "val_loss"} <= set(trained.progress[-1][1])


def test_same_seed_same_vectors(world):
    one_epoch = replace(PARAMS, max_epochs=1)
    first, second = fit(world, one_epoch).item_vectors(), fit(world, one_epoch).item_vectors()
    assert np.array_equal(first.video_ids, second.video_ids)
    assert np.allclose(first.vectors, second.vectors, atol=1e-5)


def test_max_positives_trains_on_a_seeded_sample(world, caplog):
    """max_positives (the evaluation's probes) trains on that many of the positives, the same
    ones for the same seed; 0 trains on all of them."""
    capped = replace(PARAMS, max_epochs=1, max_positives=100)
    with caplog.at_level(logging.INFO, logger="models.two_tower"):
        first, second = fit(world, capped).item_vectors(), fit(world, capped).item_vectors()
        fit(world, replace(PARAMS, max_epochs=1))
    sizes = [m for m in caplog.messages if "validation positives" in m]
    assert sizes[0] == sizes[1] and sizes[0].startswith("two-tower: 90 training, 10 validation")
    n = len(world.positives)
    assert n > 100 and sizes[2].startswith(f"two-tower: {n - round(0.1 * n)} training")
    assert np.allclose(first.vectors, second.vectors, atol=1e-5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside Keras
def test_save_and_load_give_the_same_vectors(trained, world, tmp_path):
    trained.model.save(tmp_path / "two_tower")
    back = TwoTowerModel.load(tmp_path / "two_tower")
    vectors = back.item_vectors()
    assert np.array_equal(vectors.video_ids, trained.vectors.video_ids)
    assert np.allclose(vectors.vectors, trained.vectors.vectors, atol=1e-6)
    assert back.history == trained.model.history
    users = world.held_out.head(5)
    assert np.allclose(back.user_vectors(users), trained.model.user_vectors(users), atol=1e-6)


def test_bare_keras_fit_on_the_building_blocks(world):
    """The pieces the lead benchmarks against: one epoch of arrays through a plain `fit`."""
    spec = make_spec(world.positives, world.items, CATEGORICAL, NUMERIC, world.attribute_of_column)
    catalog = encode_items(world.items, spec)
    rows = pd.Index(world.items["video_id"]).get_indexer(world.positives["video_id"])
    pairs = sample_pairs(
        rows, np.flatnonzero(catalog["video_index"] > 0), 4, np.random.default_rng(0)
    )
    x, y = training_arrays(encode_users(world.positives, spec), catalog, pairs)
    assert len(y) == 5 * len(world.positives) and y.sum() == len(world.positives)
    _, _, train_model = build_towers(spec, PARAMS)
    history = train_model.fit(x, y, batch_size=PARAMS.batch_size, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_rejects_empty_positives(world):
    with pytest.raises(ValueError, match="no positives"):
        fit(SimpleNamespace(**{**vars(world), "positives": world.positives.iloc[:0]}))


def test_rejects_positives_of_unknown_videos(world):
    positives = world.positives.copy()
    positives.loc[0, "video_id"] = "not in catalog"
    with pytest.raises(ValueError, match="not in items.*not in catalog"):
        fit(SimpleNamespace(**{**vars(world), "positives": positives}))


def test_rejects_profile_columns_without_attribute(world):
    with pytest.raises(ValueError, match="attributes for"):
        fit(SimpleNamespace(**{**vars(world), "n_columns": world.n_columns + 1}))
