"""The platform's Feast store: deploy the feature repo into the workspace, write its offline
sources, apply and materialize, and read point-in-time training sets and online lookups.

Each data set gets its own copy of `feature_repo/` (workspace/data/<dataset>/feature_repo), a
plain Feast repo: `cd` into it and `feast ui`, `feast materialize-incremental` work as usual.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml

from pipelines.config import Config, ConfigError
from pipelines.data.io import publish_folder, write_json
from pipelines.redaction import redact

log = logging.getLogger(__name__)

FEATURE_REPO = Path(__file__).resolve().parents[1] / "feature_repo"
DEFINITIONS = ("feature_store.yaml", "*.py", "default_columns.json")
SOURCE_FILES = {
    "video_profile": "video_profile.parquet",
    "video_attributes": "video_attributes.parquet",
    "user_profile": "user_profile.parquet",
    "vocabulary": "profile_vocabulary.parquet",
}
TIMESTAMP = "event_timestamp"
PROFILE_VIEWS = ("video_profile", "video_attributes", "user_profile")
RELATED_COLORS = ("blue", "green")  # feature_repo/related.py
# Feast's file registry rewrites registry.db in place (a materialize does so twice): a reader
# that reads it meanwhile finds it empty or cut short. Online reads try again, reading it anew.
REGISTRY_ATTEMPTS = 5
REGISTRY_HOME = "registry_home"  # the repo path the registry was made at (see `apply`)
REGISTRY_PAUSE_S = 0.05


class FeatureStoreError(RuntimeError):
    """Feast refused the repo or the data; the message carries Feast's own words."""


@dataclass
class FeatureTables:
    """What the features step publishes: one frame per source, the vocabulary the profile
    indices refer to, and the columns the views carry (data/sources/columns.json)."""

    video_profile: pd.DataFrame
    video_attributes: pd.DataFrame
    user_profile: pd.DataFrame
    vocabulary: pd.DataFrame
    columns: Mapping[str, object]


def feast_project(config: Config) -> str:
    """The data set's Feast project: related_videos_<dataset> (letters, digits, underscores)."""
    return "related_videos_" + re.sub(r"[^A-Za-z0-9_]", "_", config.data.dataset)


def online_store_settings(config: Config) -> dict[str, object]:
    """The feature repo's online store: SQLite in the repo, or the configured Redis."""
    kind = config.serving.online_store
    if kind == "sqlite":
        return {"type": "sqlite", "path": "data/online_store.db"}
    if kind == "redis":
        return {"type": "redis", "connection_string": config.serving.redis}
    raise ConfigError(f"serving.online_store: {kind!r} is neither sqlite nor redis")


def deploy_repo(
    target: Path,
    source: Path = FEATURE_REPO,
    online_store: Mapping[str, object] | None = None,
    project: str | None = None,
) -> Path:
    """Copy the repo's definitions (not its data) into `target`; data/ there is kept.

    `online_store` replaces the yaml's online_store section (e.g. {"type": "redis",
    "connection_string": "localhost:6379"}); `project` its project (Redis keys are per project,
    so two data sets on one server need two). The related-video copies get empty sources until
    a table is published, so that `feast materialize` works on the repo from the start."""
    target.mkdir(parents=True, exist_ok=True)
    for pattern in DEFINITIONS:
        for path in source.glob(pattern):
            shutil.copy2(path, target / path.name)
    if online_store or project:
        settings = yaml.safe_load((target / "feature_store.yaml").read_text())
        if online_store:
            settings["online_store"] = dict(online_store)
        if project:
            settings["project"] = project
        (target / "feature_store.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    (target / "data").mkdir(exist_ok=True)
    related = target / "data" / "related"
    related.mkdir(exist_ok=True)
    for color in RELATED_COLORS:
        if not (related / f"{color}.parquet").exists():
            write_atomically(empty_related_rows(), related / f"{color}.parquet")
    return target


def online_store_of(repo: Path) -> dict:
    """The repo's online_store section as its feature_store.yaml says."""
    settings = yaml.safe_load((Path(repo) / "feature_store.yaml").read_text())
    return dict(settings.get("online_store") or {})


def ensure_online_store(repo: Path, online_store: Mapping[str, object], project: str) -> bool:
    """Point the deployed repo at `online_store` (and apply) if it points elsewhere; True if it
    had to. A publish goes where the configuration says, whatever the features step used."""
    settings = yaml.safe_load((Path(repo) / "feature_store.yaml").read_text())
    if settings.get("online_store") == dict(online_store) and settings.get("project") == project:
        return False
    shown = redact(str(dict(online_store)))
    log.info("feature repo %s: project %s, online store now %s", repo, project, shown)
    deploy_repo(repo, online_store=online_store, project=project)
    apply(repo)
    return True


def empty_related_rows() -> pd.DataFrame:
    """The related-video source's columns, without rows."""
    return pd.DataFrame(
        {
            "video_id": pd.Series(dtype=str),
            "related_video_ids": pd.Series(dtype=object),
            "scores": pd.Series(dtype=object),
            "reasons": pd.Series(dtype=object),
            "table_version": pd.Series(dtype=str),
            TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )


def write_atomically(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet to a temporary file beside `path`, then one rename: never a half-written file."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(scratch, index=False)
    os.replace(scratch, path)
    return path


def publish_sources(repo: Path, tables: FeatureTables) -> Path:
    """Write every source, the vocabulary and columns.json into data/sources, swapped in whole:
    Feast reads the old set or the new one, never a mix."""
    frames = {
        "video_profile": tables.video_profile,
        "video_attributes": tables.video_attributes,
        "user_profile": tables.user_profile,
        "vocabulary": tables.vocabulary,
    }
    with publish_folder(repo / "data" / "sources") as scratch:
        for name, frame in frames.items():
            frame.to_parquet(scratch / SOURCE_FILES[name], index=False)
        write_json(dict(tables.columns), scratch / "columns.json")
    return repo / "data" / "sources"


def read_source(repo: Path, name: str) -> pd.DataFrame:
    """One published source (or the vocabulary) as a frame."""
    path = repo / "data" / "sources" / SOURCE_FILES[name]
    if not path.exists():
        raise FeatureStoreError(f"{path}: no such file; run the features step first")
    return pd.read_parquet(path)


def apply(repo: Path) -> None:
    """`feast apply` in the repo, as its own process: Feast imports the repo's modules by name,
    which a long-lived process cannot safely do for more than one repo.

    Feast's registry records the online store's tables by absolute path, and an apply drops the
    tables it no longer lists: applied in a copied workspace, a registry made elsewhere would
    drop the original's tables. So a registry made at another path is set aside (the
    definitions rebuild it), and one whose SQLite tables are gone is applied anew."""
    repo = Path(repo).resolve()
    registry, home = repo / "data" / "registry.db", repo / "data" / REGISTRY_HOME
    made_at = home.read_text() if home.exists() else None
    if registry.exists() and made_at != str(repo):
        log.info(
            "feature repo %s: its registry was made at %s: applied anew from the definitions",
            repo,
            made_at or "another path",
        )
        registry.unlink()
    _feast_apply(repo)
    if _missing_tables(repo):
        log.warning("feature repo %s: the online store lost its tables: applied anew", repo)
        registry.unlink(missing_ok=True)
        _feast_apply(repo)
    home.write_text(str(repo))


def _missing_tables(repo: Path) -> list[str]:
    """The profile views' tables a SQLite online store lacks (none for another store)."""
    settings = yaml.safe_load((repo / "feature_store.yaml").read_text())
    store = settings.get("online_store") or {}
    if store.get("type") != "sqlite":
        return []
    expected = [f"{settings['project']}_{view}" for view in PROFILE_VIEWS]
    path = repo / store.get("path", "data/online_store.db")
    if not path.exists():
        return expected
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        present = {row[0] for row in rows}
    return [table for table in expected if table not in present]


def _feast_apply(repo: Path) -> None:
    feast = Path(sys.executable).with_name("feast")
    command = [str(feast) if feast.exists() else "feast", "apply"]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise FeatureStoreError(f"feast apply failed in {repo}:\n{tail}")
    log.debug("feast apply:\n%s", result.stdout)


def open_store(repo: Path):
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo))


def close_store(store: object) -> None:
    """Close the connection the store's online store holds, if it opened one: SQLite's
    connection (a file handle on online_store.db) or Redis's client. Feast opens it on first use
    and closes it only in `teardown`, which deletes the data: a process that opens a store per
    publish would otherwise keep one handle per store it ever opened. A closed store still
    works: Feast opens a new connection on its next use."""
    provider = getattr(store, "_provider", None)
    online_store = getattr(provider, "_online_store", None)
    if online_store is None:  # never used for an online read or write: nothing was opened
        return
    for attribute in ("_conn", "_client"):  # SqliteOnlineStore, RedisOnlineStore
        connection = getattr(online_store, attribute, None)
        if connection is None:
            continue
        try:
            connection.close()
        except Exception as error:  # a connection that cannot close has nothing left to free
            log.debug("closing the online store's connection: %s", error)
        setattr(online_store, attribute, None)


def materialize(
    repo: Path, start: datetime, end: datetime, views: Sequence[str] | None = None
) -> None:
    """Load the views' latest values in [start, end] into the online store (all views when
    `views` is None)."""
    views = None if views is None else list(views)
    store = open_store(repo)
    try:
        store.materialize(start_date=start, end_date=end, feature_views=views)
    finally:
        close_store(store)


def historical_features(
    repo: Path, entity_rows: pd.DataFrame, service: str, timestamp: str = "ts"
) -> pd.DataFrame:
    """A point-in-time correct training set: each row of `entity_rows` (join keys plus the
    `timestamp` column) with the service's features as they were at that time. Rows come back
    in the order given, with every original column."""
    store = open_store(repo)
    frame = entity_rows.rename(columns={timestamp: TIMESTAMP}).reset_index(drop=True)
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True).astype("datetime64[ns, UTC]")
    # One view at a time over its distinct (join keys, time): the file offline store keeps only
    # one entity row per (a view's join keys, timestamp), so two events of one user at the same
    # instant would otherwise lose one row.
    for projection in store.get_feature_service(service).feature_view_projections:
        view = store.get_feature_view(projection.name)
        keys = [column.name for column in view.entity_columns]
        names = [feature.name for feature in projection.features]
        distinct = frame[[*keys, TIMESTAMP]].drop_duplicates().reset_index(drop=True)
        found = store.get_historical_features(
            entity_df=distinct, features=[f"{projection.name}:{name}" for name in names]
        ).to_df()
        found[TIMESTAMP] = found[TIMESTAMP].astype("datetime64[ns, UTC]")
        frame = frame.merge(found[[*keys, TIMESTAMP, *names]], on=[*keys, TIMESTAMP], how="left")
    return frame.rename(columns={TIMESTAMP: timestamp})


def online_features(
    repo: Path,
    features: str | Sequence[str],
    entity_rows: Sequence[Mapping[str, object]],
    store=None,
) -> pd.DataFrame:
    """Online lookup: a FeatureService name, or feature references like "video_profile:duration_s".
    Unknown entities come back with null features. `store`: an open store on `repo` to reuse (a
    server keeps one: opening one reads the registry, ~6 ms); else one is opened."""
    from feast.errors import FeatureServiceNotFoundException, FeatureViewNotFoundException
    from google.protobuf.message import DecodeError

    opened_here = store is None
    try:
        for attempt in range(1, REGISTRY_ATTEMPTS + 1):
            try:
                if store is None:
                    store = open_store(repo)
                elif attempt > 1:
                    store.refresh_registry()
                refs = (
                    store.get_feature_service(features)
                    if isinstance(features, str)
                    else list(features)
                )
                found = store.get_online_features(features=refs, entity_rows=list(entity_rows))
                return found.to_df()
            except (FeatureViewNotFoundException, FeatureServiceNotFoundException, DecodeError):
                if attempt == REGISTRY_ATTEMPTS:
                    raise
                time.sleep(REGISTRY_PAUSE_S * attempt)
        raise AssertionError("unreachable")
    finally:
        if opened_here and store is not None:
            close_store(store)
