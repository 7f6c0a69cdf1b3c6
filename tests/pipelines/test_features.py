"""The features step on the toy world: profiles and user features published to Feast, training
sets point-in-time from the offline store, lookups from the SQLite online store, tracked."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from models.profile import encode_profiles, fit_vocabulary, profile_indices
from pipelines import feature_store
from pipelines.config import load_config
from pipelines.data.io import DataFileError
from pipelines.features import run_features


def test_profiles_are_the_top_k_encoding_of_the_videos(toy_pipeline):
    config, world = toy_pipeline.config, toy_pipeline.world
    published = feature_store.read_source(toy_pipeline.features.repo, "video_profile")
    assert sorted(published["video_id"]) == sorted(world.videos["video_id"])
    vocabulary = fit_vocabulary(
        world.videos, config.dataset.video_attributes, config.candidates.top_k_values
    )
    encoded = profile_indices(encode_profiles(world.videos, vocabulary))
    expected = dict(zip(world.videos["video_id"], encoded, strict=True))
    tokens = vocabulary.tokens()
    for row in published.itertuples():
        assert list(row.profile_indices) == list(expected[row.video_id])
        assert list(row.profile_tokens) == [tokens[i] for i in row.profile_indices]
    columns = toy_pipeline.features.tables.columns
    assert columns["video_attributes"] == config.dataset.video_attributes


def test_every_event_gets_its_user_and_video_features_point_in_time(toy_pipeline):
    events = toy_pipeline.world.events.sample(400, random_state=0)
    frame = feature_store.historical_features(
        toy_pipeline.features.repo, events, "coordinating_network"
    )
    assert len(frame) == len(events)
    assert list(frame["video_id"]) == list(events["video_id"])
    # A profile holds from publication or the first event, so no event misses its features.
    assert frame["profile_indices"].map(lambda v: isinstance(v, list | np.ndarray)).all()
    users = toy_pipeline.world.users.set_index("user_id")
    assert np.allclose(frame["level"], users.loc[frame["user_id"], "level"])
    videos = toy_pipeline.world.videos.set_index("video_id")
    assert np.allclose(frame["duration_s"], videos.loc[frame["video_id"], "duration_s"])


def test_online_lookup_serves_the_materialized_profiles(toy_pipeline):
    repo = toy_pipeline.features.repo
    published = feature_store.read_source(repo, "video_profile").set_index("video_id")
    ids = list(published.index[:5])
    online = feature_store.online_features(
        repo,
        ["video_profile:profile_indices", "video_attributes:tags"],
        [{"video_id": video_id} for video_id in ids],
    )
    for video_id, indices in zip(ids, online["profile_indices"], strict=True):
        assert list(indices) == list(published.loc[video_id, "profile_indices"])
    videos = toy_pipeline.world.videos.set_index("video_id")
    assert [list(tags) for tags in online["tags"]] == [list(videos.loc[v, "tags"]) for v in ids]


def test_the_step_is_an_mlflow_run_with_its_figures(toy_pipeline):
    runs = mlflow.search_runs(filter_string="tags.step = 'features'", output_format="list")
    assert runs, "no features run was logged"
    metrics = runs[0].data.metrics
    assert metrics["videos"] == len(toy_pipeline.world.videos)
    assert metrics["profile_columns"] > 0 and metrics["videos_without_profile"] == 0
    assert "profile_columns_tags" in metrics


def test_without_validated_tables_the_step_names_the_folder(tmp_path, mlflow_store):
    config = load_config(overrides=[f"paths.workspace={tmp_path}"])
    with pytest.raises(DataFileError, match="validated"):
        run_features(config)
