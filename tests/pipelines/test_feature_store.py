"""The Feast lifecycle on the real SQLite online store, like Feast's template `test_workflow.py`:
apply, point-in-time historical retrieval, materialize, online retrieval, list-typed features.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from datetime import UTC, datetime

import pandas as pd
import pytest

from pipelines import feature_store
from pipelines.feature_store import TIMESTAMP, FeatureStoreError, FeatureTables

T0 = pd.Timestamp("2026-01-01 00:00", tz="UTC")
T1 = pd.Timestamp("2026-01-02 00:00", tz="UTC")  # an event between the two profiles of v1
T2 = pd.Timestamp("2026-01-03 00:00", tz="UTC")  # v1's profile changes here
T3 = pd.Timestamp("2026-01-04 00:00", tz="UTC")

COLUMNS = {
    "dataset": "synthetic",
    "video_attributes": {"video_type": "single", "tags": "multi"},
    "user_categorical": ["gender"],
    "user_numeric": ["level"],
}


def _tables() -> FeatureTables:
    video_profile = pd.DataFrame(
        {
            "video_id": ["v1", "v1", "v2"],
            "profile_indices": [[0, 1], [0, 2], [3]],
            "profile_tokens": [["t=a", "tags=x"], ["t=a", "tags=y"], ["t=b"]],
            "duration_s": [60.0, 60.0, 90.0],
            TIMESTAMP: [T0, T2, T0],
        }
    )
    video_attributes = pd.DataFrame(
        {
            "video_id": ["v1", "v1", "v2"],
            "video_type": ["clip", "clip", "movie"],
            "tags": [["x"], ["y", "z"], []],
            TIMESTAMP: [T0, T2, T0],
        }
    )
    user_profile = pd.DataFrame(
        {"user_id": ["u1", "u2"], "gender": ["f", None], "level": [3.0, 7.0], TIMESTAMP: [T0, T0]}
    )
    vocabulary = pd.DataFrame(
        {"column": [0, 1, 2, 3], "attribute": ["t", "tags", "tags", "t"], "value": list("axyb")}
    )
    return FeatureTables(video_profile, video_attributes, user_profile, vocabulary, COLUMNS)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = feature_store.deploy_repo(tmp_path_factory.mktemp("feature_repo"))
    feature_store.publish_sources(repo, _tables())
    feature_store.apply(repo)
    return repo


def test_apply_registers_the_views_and_services(repo):
    store = feature_store.open_store(repo)
    views = {view.name: view for view in store.list_feature_views()}
    assert set(views) == {
        "video_profile",
        "video_attributes",
        "user_profile",
        "related_videos_blue",
        "related_videos_green",
    }
    assert {f.name for f in views["related_videos_blue"].features} == {
        "related_video_ids",
        "scores",
        "reasons",
        "table_version",
    }
    assert {f.name for f in views["video_attributes"].features} == {"video_type", "tags"}
    assert {f.name for f in views["user_profile"].features} == {"gender", "level"}
    services = {service.name for service in store.list_feature_services()}
    assert services == {"coordinating_network", "two_tower"}


def test_historical_retrieval_is_point_in_time_correct(repo):
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u1"],
            "video_id": ["v1", "v1", "v2", "v-unknown"],
            "ts": [T1, T3, T1, T3],
            "clicked": [1, 0, 1, 1],
        }
    )
    frame = feature_store.historical_features(repo, events, "coordinating_network")
    assert list(frame["clicked"]) == [1, 0, 1, 1]  # same rows, same order, columns kept
    assert list(frame["ts"]) == list(events["ts"])
    # v1 changed at T2: the event at T1 sees the old profile, the event at T3 the new one.
    assert list(frame.loc[0, "profile_indices"]) == [0, 1]
    assert list(frame.loc[1, "profile_indices"]) == [0, 2]
    assert list(frame.loc[2, "profile_indices"]) == [3]
    assert frame.loc[2, "duration_s"] == 90.0 and frame.loc[2, "level"] == 7.0
    assert _missing(frame.loc[3, "profile_indices"]) and pd.isna(frame.loc[3, "duration_s"])


def test_events_of_one_user_at_one_instant_all_come_back(repo):
    # Feast's file store keeps one entity row per (join keys, time) of a view; none may be lost.
    events = pd.DataFrame(
        {"user_id": ["u1", "u1", "u1"], "video_id": ["v1", "v2", "v1"], "ts": [T3, T3, T3]}
    )
    frame = feature_store.historical_features(repo, events, "coordinating_network")
    assert list(frame["video_id"]) == ["v1", "v2", "v1"]
    assert list(frame["duration_s"]) == [60.0, 90.0, 60.0]
    assert list(frame["level"]) == [3.0, 3.0, 3.0]


def test_an_event_before_any_profile_sees_no_features(repo):
    early = pd.DataFrame({"user_id": ["u1"], "video_id": ["v1"], "ts": [T0 - pd.Timedelta("1h")]})
    frame = feature_store.historical_features(repo, early, "two_tower")
    assert _missing(frame.loc[0, "profile_indices"])
    assert pd.isna(frame.loc[0, "level"])


def test_materialize_then_online_lookup_round_trips_lists(repo):
    feature_store.materialize(repo, T0 - pd.Timedelta("1D"), datetime.now(UTC))
    online = feature_store.online_features(
        repo,
        [
            "video_profile:profile_indices",
            "video_profile:profile_tokens",
            "video_attributes:tags",
            "video_attributes:video_type",
        ],
        [{"video_id": "v1"}, {"video_id": "v2"}, {"video_id": "nowhere"}],
    )
    assert list(online.loc[0, "profile_indices"]) == [0, 2]  # the latest profile
    assert list(online.loc[0, "profile_tokens"]) == ["t=a", "tags=y"]
    assert list(online.loc[0, "tags"]) == ["y", "z"]
    assert online.loc[1, "video_type"] == "movie"
    assert online.loc[2, "profile_indices"] is None  # a missing entity comes back as None
    users = feature_store.online_features(repo, "two_tower", [{"user_id": "u2", "video_id": "v2"}])
    assert users.loc[0, "level"] == 7.0 and users.loc[0, "gender"] is None


def test_sources_are_swapped_whole(repo):
    before = feature_store.read_source(repo, "video_profile")
    broken = _tables()
    broken.user_profile = object()  # cannot be written: the publication must fail as a whole
    with pytest.raises(AttributeError):
        feature_store.publish_sources(repo, broken)
    after = feature_store.read_source(repo, "video_profile")
    pd.testing.assert_frame_equal(before, after)


def test_a_broken_definition_names_feast_s_complaint(tmp_path):
    repo = feature_store.deploy_repo(tmp_path / "repo")
    (repo / "features.py").write_text("raise ValueError('nope')\n")
    with pytest.raises(FeatureStoreError, match="feast apply failed"):
        feature_store.apply(repo)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


@pytest.mark.slow
def test_feast_ui_serves_the_repo(repo):
    """`feast ui` in the repo answers with its views, as for any Feast repo."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    feast = Path(sys.executable).with_name("feast")
    server = subprocess.Popen(
        [str(feast), "ui", "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/v1/feature_views?project=related_videos"
    try:
        deadline = time.monotonic() + 300  # start-up on a loaded 2-core machine
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    views = json.loads(answer.read())["featureViews"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, "feast ui exited"
                assert time.monotonic() < deadline, "feast ui did not answer within 300 s"
                time.sleep(1)
        assert {view["spec"]["name"] for view in views} == {
            "video_profile",
            "video_attributes",
            "user_profile",
            "related_videos_blue",
            "related_videos_green",
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def _video_type(repo) -> object:
    online = feature_store.online_features(
        repo, ["video_attributes:video_type"], [{"video_id": "v2"}]
    )
    return online.loc[0, "video_type"]


def test_a_copied_repo_applies_without_dropping_the_original_s_tables(tmp_path):
    # Feast's registry names the SQLite tables by absolute path: a copy applying with the
    # original's registry would drop the original's tables and leave its lookups failing.
    original = feature_store.deploy_repo(tmp_path / "original")
    feature_store.publish_sources(original, _tables())
    feature_store.apply(original)
    feature_store.materialize(original, T0 - pd.Timedelta("1D"), datetime.now(UTC))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)
    feature_store.publish_sources(copy, _tables())
    feature_store.apply(copy)
    feature_store.materialize(copy, T0 - pd.Timedelta("1D"), datetime.now(UTC))
    assert _video_type(original) == _video_type(copy) == "movie"
    # A store that lost its tables anyway (a copy made before this fix) is applied anew.
    with closing(sqlite3.connect(original / "data" / "online_store.db")) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            connection.execute(f'DROP TABLE "{table}"')
        connection.commit()
    feature_store.apply(original)
    feature_store.materialize(original, T0 - pd.Timedelta("1D"), datetime.now(UTC))
    assert _video_type(original) == "movie"
