"""The synthetic world: deterministic, contract-valid, and the planted structure is measurable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import SyntheticSize
from pipelines.data import contract
from pipelines.data.io import read_table
from simulator.behaviour import BehaviourModel
from simulator.synthetic import generate, write_synthetic

PROFILE = ("video_type", "styles", "actors", "staff", "tags")
# Enough events per user for rates and retention to be stable, still well under a second.
BUSY = SyntheticSize(videos=200, users=800, events=40_000, days=14)


@pytest.fixture(scope="module")
def busy_world(config):
    return generate(config.synthetic, config.seed, BUSY)


def _genuine(world) -> pd.Series:
    return (world.events["clicked"] == 1) & (world.truth["events"]["accidental"] == 0)


def _cosines(videos: pd.DataFrame) -> np.ndarray:
    """Cosine of the multi-hot profiles (every value of every attribute), video by video."""
    rows = [
        {
            f"{column}={value}"
            for column in PROFILE
            for value in (getattr(row, column) if column != "video_type" else [row.video_type])
        }
        for row in videos.itertuples()
    ]
    vocabulary = {value: i for i, value in enumerate(sorted(set().union(*rows)))}
    hot = np.zeros((len(rows), len(vocabulary)))
    for i, values in enumerate(rows):
        hot[i, [vocabulary[v] for v in values]] = 1.0
    hot /= np.linalg.norm(hot, axis=1, keepdims=True)
    return hot @ hot.T


# --- determinism and size ---------------------------------------------------------------------


def test_same_seed_same_world_other_seed_other_world(config, toy_world):
    toy = config.synthetic.sizes["toy"]
    again = generate(config.synthetic, config.seed, toy)
    for name in ("videos", "users", "events"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(toy_world, name))
    for name, frame in toy_world.truth.items():
        pd.testing.assert_frame_equal(again.truth[name], frame)
    other = generate(config.synthetic, config.seed + 1, toy)
    assert not other.events.equals(toy_world.events)
    assert not other.videos.equals(toy_world.videos)


@pytest.mark.parametrize("size", [SyntheticSize(videos=60, users=80, events=1500, days=8), BUSY])
def test_sizes_are_met(config, size):
    world = generate(config.synthetic, 5, size)
    assert len(world.videos) == size.videos and len(world.users) == size.users
    assert len(world.events) == pytest.approx(size.events, rel=0.15)


# --- the contract -------------------------------------------------------------------------------


def test_tables_are_already_in_contract_types(config, toy_world):
    schemas = contract.schemas_for(config.datasets["synthetic"])
    for name in contract.TABLES:
        frame = getattr(toy_world, name)
        assert list(frame.columns) == schemas[name].names
        conformed = contract.conform(frame, schemas[name])
        pd.testing.assert_frame_equal(conformed.frame, frame)
        assert all(values.empty for values in conformed.unparseable.values())


def test_keys_references_and_values_are_valid(config, toy_world):
    videos, users, events = toy_world.videos, toy_world.users, toy_world.events
    assert videos["video_id"].is_unique and users["user_id"].is_unique
    assert not events.duplicated(list(contract.EVENT_KEY)).any()
    assert events["user_id"].isin(users["user_id"]).all()
    assert events["video_id"].isin(videos["video_id"]).all()
    assert events["source_video_id"].dropna().isin(videos["video_id"]).all()
    for flag in contract.EVENT_FLAGS:
        assert set(events[flag].unique()) <= {0, 1}, flag
    duration = events["video_id"].map(videos.set_index("video_id")["duration_s"])
    assert (events["play_time_s"] >= 0).all()
    assert (events["play_time_s"] <= duration).all()
    assert (videos["duration_s"] > 0).all()
    assert users["level"].between(1, config.synthetic.audience.levels).all()
    start = pd.Timestamp(config.synthetic.start_date, tz="UTC")
    end = start + pd.Timedelta(days=config.synthetic.sizes["toy"].days)
    assert events["ts"].between(start, end, inclusive="left").all()
    assert (users["registered_at"] < start).all()
    published = events["video_id"].map(videos.set_index("video_id")["published_at"])
    assert (events["ts"] > published).all()
    assert all(
        len(styles) and len(actors) and len(tags)
        for styles, actors, tags in zip(
            videos["styles"], videos["actors"], videos["tags"], strict=True
        )
    )


def test_written_tables_read_back_the_same(config, toy_world, tmp_path):
    paths = write_synthetic(toy_world, tmp_path)
    assert sorted(paths) == sorted(contract.TABLES)
    schemas = contract.schemas_for(config.datasets["synthetic"])
    for name, path in paths.items():
        read = contract.conform(read_table(path), schemas[name]).frame
        pd.testing.assert_frame_equal(read, getattr(toy_world, name))
    for name in toy_world.truth:
        assert len(read_table(tmp_path / "truth" / f"{name}.parquet")) == len(toy_world.truth[name])


def test_truth_is_aligned_with_the_data(config, toy_world):
    truth = toy_world.truth
    assert truth["videos"]["video_id"].tolist() == toy_world.videos["video_id"].tolist()
    assert truth["users"]["user_id"].tolist() == toy_world.users["user_id"].tolist()
    for column in ("user_id", "video_id", "ts"):
        assert truth["events"][column].equals(toy_world.events[column])
    # the model rebuilt from the written truth knows every event's match
    model = BehaviourModel.from_truth(config.synthetic, toy_world.videos, truth)
    position = pd.Series(np.arange(len(truth["videos"])), index=truth["videos"]["video_id"])
    events = toy_world.events
    sources = events["source_video_id"].map(position).fillna(-1).to_numpy(int)
    match = model.match(sources, events["video_id"].map(position).to_numpy())
    np.testing.assert_allclose(match, truth["events"]["match"])


# --- sessions and source_video_id ------------------------------------------------------------


def test_source_is_an_earlier_watch_in_the_same_session(toy_world):
    events, truth = toy_world.events, toy_world.truth["events"]
    log = events.assign(session=truth["session_id"], step=truth["step"])
    assert (log.groupby("session")["user_id"].nunique() == 1).all()
    assert (log["source_video_id"].isna() == (log["step"] == 0)).all()
    assert log["source_video_id"].notna().mean() > 0.5
    watched = log[_genuine(toy_world)][["session", "video_id", "ts"]].rename(
        columns={"video_id": "source_video_id", "ts": "watched_at"}
    )
    shown = log[log["source_video_id"].notna()].reset_index()
    pairs = shown.merge(watched, on=["session", "source_video_id"], how="left")
    earlier = (pairs["watched_at"] < pairs["ts"]).groupby(pairs["index"]).any()
    assert earlier.reindex(shown["index"]).all()


def test_a_users_sessions_do_not_overlap(toy_world):
    log = toy_world.events.assign(session=toy_world.truth["events"]["session_id"])
    spans = (
        log.groupby(["user_id", "session"])["ts"]
        .agg(["min", "max"])
        .sort_values(["user_id", "min"])
    )
    following = spans.groupby(level="user_id")["min"].shift(-1)
    assert (following.dropna() > spans["max"][following.notna()]).all()


# --- the planted structure ---------------------------------------------------------------------


def test_videos_of_one_series_share_their_profile(toy_world):
    cosine = _cosines(toy_world.videos)
    truth = toy_world.truth["videos"]
    series, genre = truth["series_id"].to_numpy(), truth["genre"].to_numpy()
    upper = np.triu(np.ones_like(cosine, dtype=bool), k=1)
    same_series = upper & (series[:, None] == series[None, :]) & pd.notna(series)[:, None]
    cross_genre = upper & (genre[:, None] != genre[None, :])
    assert same_series.sum() > 50
    assert cosine[same_series].mean() > cosine[cross_genre].mean() + 0.4
    assert (cosine[same_series] >= 0.65).mean() > 0.6
    assert (cosine[cross_genre] >= 0.65).mean() < 0.01


def test_accidental_clicks_are_quits_within_seconds(toy_world):
    events, truth = toy_world.events, toy_world.truth["events"]
    accidental = truth["accidental"] == 1
    assert accidental.sum() > 10
    assert (events.loc[accidental, "clicked"] == 1).all()
    quick = events.loc[accidental, "play_time_s"]
    genuine = events.loc[_genuine(toy_world), "play_time_s"]
    assert quick.max() < 5.0
    assert quick.median() < 0.01 * genuine.median()
    assert events.loc[accidental, ["liked", "shared"]].to_numpy().sum() == 0


def test_cold_videos_have_few_or_no_events(config, toy_world):
    truth = toy_world.truth["videos"].set_index("video_id")
    counts = toy_world.events["video_id"].value_counts().reindex(truth.index, fill_value=0)
    cold = truth["is_cold"]
    assert cold.sum() == round(config.synthetic.cold_share * len(truth))
    assert (counts[cold] == 0).any()
    assert counts[cold].mean() < 0.25 * counts[~cold].mean()
    start = pd.Timestamp(config.synthetic.start_date, tz="UTC")
    published = toy_world.videos.set_index("video_id")["published_at"]
    last_days = config.synthetic.sizes["toy"].days - config.synthetic.cold_window_days
    assert (published[cold] >= start + pd.Timedelta(days=last_days)).all()
    assert (published[~cold] < start).all()


def test_blockbusters_of_several_genres_are_watched_by_most_users(toy_world):
    truth = toy_world.truth["videos"]
    blockbusters = truth.loc[truth["is_blockbuster"], "video_id"]
    assert truth.loc[truth["is_blockbuster"], "genre"].nunique() >= 3
    watched = toy_world.events[_genuine(toy_world)]
    viewers = watched.groupby("video_id")["user_id"].nunique()
    users = toy_world.events["user_id"].nunique()
    assert watched.loc[watched["video_id"].isin(blockbusters), "user_id"].nunique() > 0.5 * users
    assert viewers.reindex(blockbusters).mean() > 3 * viewers.drop(blockbusters).mean()


def test_likes_follow_the_series_and_dislikes_the_mismatch(busy_world):
    events, truth = busy_world.events, busy_world.truth["videos"].set_index("video_id")
    shown = events[events["source_video_id"].notna()]
    series = truth["series_id"]
    target_series = shown["video_id"].map(series)
    same = target_series.notna() & (target_series == shown["source_video_id"].map(series))
    unrelated = shown["video_id"].map(truth["genre"]) != shown["source_video_id"].map(
        truth["genre"]
    )
    assert same.sum() > 1000 and unrelated.sum() > 1000
    for flag in ("clicked", "liked", "shared"):
        assert shown.loc[same, flag].mean() > 2 * shown.loc[unrelated, flag].mean(), flag
    genuine = _genuine(busy_world)[shown.index]
    assert (
        shown.loc[same & genuine, "disliked"].mean()
        < 0.5 * shown.loc[unrelated & genuine, "disliked"].mean()
    )


def test_satisfied_users_retain_more(config, busy_world):
    """The weights module's label: any event in the 7 days after a cut-off date."""
    events, truth = busy_world.events, busy_world.truth["events"]
    days = config.synthetic.retention_days
    cut_off = pd.Timestamp(config.synthetic.start_date, tz="UTC") + pd.Timedelta(
        days=BUSY.days - days
    )
    before = (events["ts"] < cut_off) & (events["clicked"] == 1)
    after = events["ts"].between(cut_off, cut_off + pd.Timedelta(days=days), inclusive="left")
    satisfaction = (
        truth.loc[before, "satisfaction"]
        .groupby(events.loc[before, "user_id"])
        .agg(["mean", "size"])
    )
    satisfaction = satisfaction.loc[satisfaction["size"] >= 5, "mean"]
    retained = satisfaction.index.isin(events.loc[after, "user_id"].unique())
    tercile = pd.qcut(satisfaction.rank(method="first"), 3, labels=False).to_numpy()
    bottom, top = retained[tercile == 0].mean(), retained[tercile == 2].mean()
    assert top > bottom + 0.05
    churned = busy_world.truth["users"]["churn_day"].notna()
    assert 0.05 < churned.mean() < 0.95
