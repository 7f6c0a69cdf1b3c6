"""The coordinating network: labels, the leak guard, encoding, out-of-fold scoring, class
balance, determinism, save/load, and the property that matters: accidental clicks are dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import coordinating as cn
from models import routing

OBJECTIVES = [
    ("click", "clicked"),
    ("play_time", "watched_half"),
    ("like", "liked"),
    ("share", "shared"),
    ("dislike", "disliked"),
]
ATTRIBUTES = ("video_type", "styles", "actors", "staff", "tags")
CONTEXT = ["has_source", "source_similarity", "hour_sin", "hour_cos", "video_age_days"]
# Small and quick: a large batch with a high learning rate converges in a few epochs.
QUICK = cn.CoordinatingParams(
    hidden_units=[16, 8], folds=2, epochs=4, batch_size=1024, learning_rate=0.01,
    threshold=0.6, seed=99,
)  # fmt: skip
TOY = cn.CoordinatingParams([16, 8], 2, 2, 256, 0.01, 0.6, 7)


def _tokens(value) -> list:
    return list(value) if isinstance(value, list | np.ndarray) else [value]


def cn_events(world) -> tuple[pd.DataFrame, cn.CoordinatingInputs]:
    """The events joined with video and user features, a multi-hot profile over every
    attribute=value token (a stand-in for models/profile.py) and numeric context."""
    videos = world.videos.set_index("video_id")
    tokens = {
        vid: [f"{a}={v}" for a in ATTRIBUTES for v in _tokens(row[a])]
        for vid, row in videos.iterrows()
    }
    codes, vocabulary = pd.factorize(pd.Series([t for ts in tokens.values() for t in ts]))
    ends = np.cumsum([len(ts) for ts in tokens.values()])
    profile = dict(zip(tokens, np.split(codes, ends[:-1]), strict=True))
    events = world.events.join(world.users.set_index("user_id"), on="user_id")
    events = events.join(videos[["duration_s", "published_at"]], on="video_id")
    events["profile_indices"] = events["video_id"].map(profile)
    sets = {vid: set(ts) for vid, ts in tokens.items()}
    has_source = events["source_video_id"].notna()
    events["has_source"] = has_source.astype(float)
    events["source_similarity"] = [
        len(sets[s] & sets[v]) / np.sqrt(len(sets[s]) * len(sets[v])) if s is not None else 0.0
        for s, v in zip(events["source_video_id"], events["video_id"], strict=True)
    ]
    hour = events["ts"].dt.hour + events["ts"].dt.minute / 60
    events["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    events["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    events["video_age_days"] = (events["ts"] - events["published_at"]).dt.total_seconds() / 86400
    spec = cn.CoordinatingInputs(["age_bucket", "gender"], ["level"], CONTEXT, len(vocabulary))
    return events, spec


@pytest.fixture(scope="module")
def toy(toy_world):
    return cn_events(toy_world)


@pytest.fixture(scope="module")
def toy_oof(toy):
    events, spec = toy
    return cn.out_of_fold_predictions(events, OBJECTIVES, spec, TOY)


@pytest.fixture(scope="module")
def small_oof(config):
    """The `small` world (40k events): the toy has too few accidental clicks and rare positives."""
    from simulator.synthetic import generate

    world = generate(config.synthetic, config.seed, config.synthetic.sizes["small"])
    events, spec = cn_events(world)
    labels = cn.objective_labels(events, OBJECTIVES)
    oof = cn.out_of_fold_predictions(events, OBJECTIVES, spec, QUICK)
    return world, labels, oof


def test_labels_on_hand_cases():
    events = pd.DataFrame(
        {
            "clicked": [1, 1, 1, 0, 1],
            "play_time_s": [50.0, 49.9, 2.0, 0.0, 300.0],
            "duration_s": [100.0, 100.0, 100.0, 100.0, 120.0],
            "liked": [1, 0, 0, 0, 0],
            "shared": [0, 0, 0, 0, 1],
            "disliked": [0, 0, 1, 0, 0],
        },
        index=[10, 11, 12, 13, 14],
    )
    labels = cn.objective_labels(events, OBJECTIVES)
    assert labels.index.tolist() == [10, 11, 12, 13, 14]
    assert labels.dtypes.eq(np.int8).all()
    assert labels["play_time"].tolist() == [1, 0, 0, 0, 1]
    assert labels["click"].tolist() == [1, 1, 1, 0, 1]
    assert labels["dislike"].tolist() == [0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="unknown objective labels"):
        cn.objective_labels(events, [("watch", "play_time_s")])


@pytest.mark.parametrize("column", ["play_time_s", "clicked", "watched_half", "disliked"])
def test_labels_are_never_features(column):
    with pytest.raises(ValueError, match="never features"):
        cn.CoordinatingInputs(["gender"], [], ["has_source", column], 10)
    with pytest.raises(ValueError, match="never features"):
        cn.CoordinatingInputs([column], ["level"], [], 10)


def test_encoding_fits_on_training_rows_only():
    train = pd.DataFrame(
        {
            "gender": ["f", "m", None],
            "level": [1.0, 3.0, np.nan],
            "profile_indices": [[0, 2], [1], []],
        }
    )
    held_out = pd.DataFrame(
        {"gender": ["x", "f"], "level": [np.nan, 5.0], "profile_indices": [[2, 1, 0], None]}
    )
    spec = cn.CoordinatingInputs(["gender"], ["level"], [], n_columns=3)
    encoder = cn.FeatureEncoder.fit(train, spec)
    assert encoder.means == {"level": 2.0} and encoder.stds == {"level": 1.0}
    arrays = cn.encode_features(held_out, spec, encoder)
    # Unknown "x" takes the column's unknown id (1), "f" its own; missing level: 0 and a flag.
    assert arrays.categorical[:, 0].tolist() == [
        1,
        1 + 1 + encoder.vocabularies["gender"].index("f"),
    ]
    np.testing.assert_allclose(arrays.numeric, [[0.0, 1.0], [3.0, 0.0]])
    assert arrays.profile.tolist() == [[3, 2, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="profile indices"):
        cn.encode_features(held_out.assign(profile_indices=[[3], [0]]), spec, encoder)


def test_every_row_is_scored_once_by_a_model_that_never_saw_it(toy, toy_oof, monkeypatch):
    events, spec = toy
    trained_on, scored = [], []
    fit = cn.fit_final

    def spying_fit(rows, *args):
        network = fit(rows, *args)
        trained_on.append(set(rows.index))
        predict = network.predict
        network.predict = lambda held: scored.append(set(held.index)) or predict(held)
        return network

    monkeypatch.setattr(cn, "fit_final", spying_fit)
    oof = cn.out_of_fold_predictions(events, OBJECTIVES, spec, TOY)
    assert len(scored) == TOY.folds
    assert all(not (seen & held) for seen, held in zip(trained_on, scored, strict=True))
    assert sorted(i for held in scored for i in held) == sorted(events.index)
    for fold, held in enumerate(scored):
        assert set(oof.index[oof["fold"] == fold]) == held
    assert oof.filter(like="p_").notna().all().all()
    # Same seed, same predictions (the fixture made them in another run).
    pd.testing.assert_frame_equal(oof, toy_oof, atol=1e-5, rtol=0)


# Keras 3.15 saving a TF variable under NumPy 2.4 warns from inside Keras; nothing to fix here.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_save_and_load_give_the_same_predictions(toy, tmp_path):
    events, spec = toy
    network = cn.fit_final(events, OBJECTIVES, spec, TOY)
    assert len(network.history) == TOY.epochs and "loss" in network.history
    network.save(tmp_path / "cn")
    loaded = cn.CoordinatingNetwork.load(tmp_path / "cn")
    sample = events.sample(300, random_state=1)
    pd.testing.assert_frame_equal(loaded.predict(sample), network.predict(sample), atol=1e-6)
    assert loaded.objectives == OBJECTIVES
    assert loaded.history.equals(network.history)


def test_accidental_clicks_are_dropped_far_more_often_than_genuine_ones(small_oof):
    world, labels, oof = small_oof
    routed = routing.route(labels, oof, OBJECTIVES, QUICK.threshold)
    accidental = world.truth["events"]["accidental"].to_numpy() == 1
    genuine = (labels["click"].to_numpy() == 1) & ~accidental
    dropped = ~routed["routed_click"].to_numpy()
    accidental_dropped, genuine_dropped = dropped[accidental].mean(), dropped[genuine].mean()
    # Measured 0.84 dropped against 0.43 (0.16 kept against 0.57); over other world seeds the
    # dropped ratio ran 1.6 to 1.9 and the kept ratio about 3.
    assert accidental_dropped >= 1.4 * genuine_dropped
    assert 1 - genuine_dropped >= 2.2 * (1 - accidental_dropped)


def test_rare_objectives_are_learned_despite_imbalance(small_oof):
    _, labels, oof = small_oof
    for name in ("share", "dislike"):
        assert labels[name].mean() < 0.02
        p = oof[f"p_{name}"]
        positives, negatives = p[labels[name] == 1].mean(), p[labels[name] == 0].mean()
        assert positives > negatives + 0.15
        assert (p > QUICK.threshold).mean() > 0.05  # balanced weights: not all near 0
    assert (routing.oof_auc(labels, oof) > 0.7).all()


def test_routing_report_counts_routed_positives(small_oof):
    _, labels, oof = small_oof
    routed = routing.route(labels, oof, OBJECTIVES, QUICK.threshold)
    assert not (routed.to_numpy() & (labels.to_numpy() == 0)).any()
    report = routing.routing_report(labels, routed, OBJECTIVES)
    assert report.loc["share", "positives"] == labels["share"].sum()
    assert report["routed"].tolist() == routed.sum().tolist()
    assert report["routed_share"].between(0.05, 0.95).all()
