"""The publish step, and rollback and repair: the champion's table made live in Feast's online
store (blue/green copies, pipelines/online.py), the champion alias moved to it.

A publish commits when the pointer file flips; the champion alias moves right after. A publish
stopped between the two is finished by the next promote, publish or rollback, which moves the
alias to what the pointer says (pipelines/champion.py).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow

from pipelines import faults, feature_store, online, registry, tracking, workspace
from pipelines.broken import BrokenState
from pipelines.champion import finish_interrupted_publish, move_champion
from pipelines.config import Config
from pipelines.data.io import DataFileError
from pipelines.registry import CHALLENGER, CHAMPION, MODEL_NAME

log = logging.getLogger(__name__)


@dataclass
class Published:
    version: str
    live: online.Live
    previous: str | None  # the champion before (None: the first publish)
    changed: bool  # False when the version was already live


def run_publish(config: Config, version: str | None = None) -> Published:
    """Make the approved challenger (or `version`) live and the champion; with nothing approved,
    make sure the champion is what readers see."""
    client = mlflow.MlflowClient()
    finish_interrupted_publish(config, client)
    champion = registry.alias_version(client, CHAMPION)
    if version is None:
        challenger = registry.alias_version(client, CHALLENGER)
        approved = challenger is not None and (
            client.get_model_version(MODEL_NAME, challenger).tags.get("promotion") == "approved"
        )
        version = challenger if approved else champion
    if version is None:
        raise DataFileError(
            f"{MODEL_NAME}: nothing to publish: no champion and no approved challenger "
            "(run merge, evaluate and promote first)"
        )
    return _publish(config, client, str(version), champion, record_previous=True)


def run_rollback(config: Config) -> Published:
    """Move the champion back to the version it replaced, and make that table live again."""
    client = mlflow.MlflowClient()
    finish_interrupted_publish(config, client)
    champion = registry.alias_version(client, CHAMPION)
    if champion is None:
        raise DataFileError(f"{MODEL_NAME}: no champion to roll back")
    previous = client.get_model_version(MODEL_NAME, champion).tags.get("previous_champion")
    if not previous:
        raise DataFileError(
            f"{MODEL_NAME}: v{champion} replaced no earlier champion; nothing to roll back to"
        )
    published = _publish(config, client, previous, champion, record_previous=False)
    client.set_model_version_tag(MODEL_NAME, champion, "rolled_back_to", previous)
    return published


def run_repair(config: Config) -> Published:
    """Rebuild what readers need from the model registry's champion: the Feast registry (`feast
    apply`) if it cannot be read, and the live pointer, by publishing the champion's table
    again. A damaged pointer is kept beside, as live.json.broken. Nothing to do when the
    pointer reads and names the champion."""
    client = mlflow.MlflowClient()
    repo = workspace.feature_repo_dir(config)
    champion = registry.alias_version(client, CHAMPION)
    if champion is None:
        raise DataFileError(
            f"{MODEL_NAME}: no champion in the model registry to repair from; run "
            "`related-videos main` (or promote and publish)"
        )
    if not _registry_reads(repo, config):
        # `feast apply` reads the registry first: a damaged one has to go before it can run.
        damaged = repo / "data" / "registry.db"
        if damaged.exists():
            os.replace(damaged, damaged.with_name("registry.db.broken"))
        log.warning("%s: the Feast registry cannot be read; rebuilding it (feast apply)", damaged)
        feature_store.apply(repo)
    pointer = online.related_folder(repo) / online.LIVE_FILE
    try:
        online.read_live(repo)
    except BrokenState as error:
        kept = pointer.with_name(f"{online.LIVE_FILE}.broken")
        os.replace(pointer, kept)
        log.warning("%s; kept it as %s, publishing the champion v%s", error, kept, champion)
    return _publish(config, client, champion, champion, record_previous=False)


def _registry_reads(repo: Path, config: Config) -> bool:
    """Whether the repo's Feast registry file reads (and defines the related-video copies)."""
    try:
        store = feature_store.open_store(repo)
        store.registry.get_feature_view(
            online.view_name(feature_store.RELATED_COLORS[0]), store.project, allow_cache=False
        )
        return True
    except Exception as error:  # whatever Feast raises on a damaged or missing registry
        log.debug("the Feast registry of %s does not read: %s", repo, error)
        return False


def _publish(
    config: Config,
    client: mlflow.MlflowClient,
    version: str,
    champion: str | None,
    record_previous: bool,
) -> Published:
    repo = workspace.feature_repo_dir(config)
    feature_store.ensure_online_store(
        repo, feature_store.online_store_settings(config), feature_store.feast_project(config)
    )
    live = online.read_live(repo)
    if live is not None and live.version == version and champion == version:
        log.info("publish: v%s is already the live champion", version)
        return Published(version, live, champion, changed=False)
    params = {"version": version, "champion_before": champion or "none", "repo": repo}
    with tracking.step_run("publish", params):
        started = time.perf_counter()
        table = registry.load_registered_table(version)
        digest = client.get_model_version(MODEL_NAME, version).tags.get("table_digest", "")
        live = online.publish_table(repo, table, version, digest, champion_before=champion or "")
        faults.checkpoint("publish:live")
        move_champion(client, version, champion, record_previous)
        mlflow.log_params({"color": live.color, "online_store": config.serving.online_store})
        mlflow.log_metrics(
            {"videos": live.videos, "rows": live.rows, "seconds": time.perf_counter() - started}
        )
    return Published(version, live, champion, changed=True)
