"""The features step: from the validated tables, compute the video profiles (top-K multi-hot,
models/profile.py) and user features, publish them as Feast sources, apply and materialize.

A profile holds from the moment its video is published or first shown, whichever is earlier; a
user's features from registration or the first event. Nothing expires.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd

from models.profile import encode_profiles, fit_vocabulary, profile_indices
from pipelines import feature_store, tracking, workspace
from pipelines.config import Config
from pipelines.data.io import read_table
from pipelines.feature_store import TIMESTAMP, FeatureTables

log = logging.getLogger(__name__)


@dataclass
class Features:
    repo: Path
    tables: FeatureTables


def read_validated(config: Config) -> dict[str, pd.DataFrame]:
    folder = workspace.validated_manifest(config).parent
    return {name: read_table(folder / f"{name}.parquet") for name in ("videos", "users", "events")}


def build_feature_tables(
    videos: pd.DataFrame,
    users: pd.DataFrame,
    events: pd.DataFrame,
    config: Config,
) -> FeatureTables:
    dataset = config.dataset
    attributes = dataset.video_attributes
    vocabulary = fit_vocabulary(videos, attributes, config.candidates.top_k_values)
    matrix = encode_profiles(videos, vocabulary)
    indices = profile_indices(matrix)
    tokens = vocabulary.tokens()
    video_since = _since(videos, "video_id", "published_at", events)
    user_since = _since(users, "user_id", "registered_at", events)
    video_profile = pd.DataFrame(
        {
            "video_id": videos["video_id"].to_numpy(),
            "profile_indices": [list(map(int, row)) for row in indices],
            "profile_tokens": [[tokens[i] for i in row] for row in indices],
            "duration_s": videos["duration_s"].astype("float64").to_numpy(),
            TIMESTAMP: video_since.to_numpy(),
        }
    )
    video_attributes = videos[["video_id", *attributes]].reset_index(drop=True)
    video_attributes[TIMESTAMP] = video_since
    user_columns = [*dataset.user_categorical, *dataset.user_numeric]
    user_profile = users[["user_id", *user_columns]].reset_index(drop=True)
    user_profile[TIMESTAMP] = user_since
    columns = {
        "dataset": config.data.dataset,
        "video_attributes": dict(attributes),
        "user_categorical": list(dataset.user_categorical),
        "user_numeric": list(dataset.user_numeric),
    }
    return FeatureTables(
        video_profile, video_attributes, user_profile, vocabulary.to_frame(), columns
    )


def _since(table: pd.DataFrame, key: str, time_column: str, events: pd.DataFrame) -> pd.Series:
    """When an entity's features start to hold: its own time, or its first event if earlier."""
    own = table[time_column].reset_index(drop=True)
    first_seen = table[key].map(events.groupby(key)["ts"].min()).reset_index(drop=True)
    return own.where(first_seen.isna() | (own <= first_seen), first_seen)


def run_features(config: Config) -> Features:
    tables_in = read_validated(config)
    repo = workspace.feature_repo_dir(config)
    params = {
        "dataset": config.data.dataset,
        "top_k_values": config.candidates.top_k_values,
        "feature_repo": repo,
    }
    with tracking.step_run("features", params):
        started = time.perf_counter()
        tables = build_feature_tables(
            tables_in["videos"], tables_in["users"], tables_in["events"], config
        )
        feature_store.deploy_repo(
            repo,
            online_store=feature_store.online_store_settings(config),
            project=feature_store.feast_project(config),
        )
        sources = feature_store.publish_sources(repo, tables)
        built = time.perf_counter()
        feature_store.apply(repo)
        applied = time.perf_counter()
        start = min(tables.video_profile[TIMESTAMP].min(), tables.user_profile[TIMESTAMP].min())
        feature_store.materialize(
            repo, start.to_pydatetime(), datetime.now(UTC), feature_store.PROFILE_VIEWS
        )
        done = time.perf_counter()
        _log_features(tables, sources, built - started, applied - built, done - applied)
        log.info(
            "features: %d videos (%d profile columns), %d users -> %s",
            len(tables.video_profile),
            len(tables.vocabulary),
            len(tables.user_profile),
            repo,
        )
        return Features(repo, tables)


def _log_features(
    tables: FeatureTables, sources: Path, build_s: float, apply_s: float, materialize_s: float
) -> None:
    active = tables.video_profile["profile_indices"].map(len)
    vocabulary = tables.vocabulary
    metrics = {
        "videos": len(tables.video_profile),
        "users": len(tables.user_profile),
        "profile_columns": len(vocabulary),
        "profile_active_mean": float(active.mean()),
        "videos_without_profile": int((active == 0).sum()),
        "build_seconds": build_s,
        "apply_seconds": apply_s,
        "materialize_seconds": materialize_s,
    }
    for attribute, kept in vocabulary.groupby("attribute", sort=False).size().items():
        metrics[f"profile_columns_{attribute}"] = int(kept)
    mlflow.log_metrics(metrics)
    mlflow.log_artifact(str(sources / feature_store.SOURCE_FILES["vocabulary"]), "features")
    mlflow.log_artifact(str(sources / "columns.json"), "features")
