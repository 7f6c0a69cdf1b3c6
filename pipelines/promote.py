"""Promotion and publishing: the challenger (the newest related-videos version) against the
champion on the full method's offline metrics, the champion made live in Feast's online store,
and rollback to the previous champion.

A publish commits when the pointer file flips (pipelines/online.py); the champion alias moves
right after. A publish stopped between the two is finished by the next promote, publish or
rollback, which moves the alias to what the pointer says.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from pipelines import faults, feature_store, online, registry, tracking, workspace
from pipelines.broken import BrokenState
from pipelines.config import Config
from pipelines.data.io import DataFileError
from pipelines.evaluate import LOWER_IS_BETTER
from pipelines.features import feast_project, feature_repo_dir, online_store_settings
from pipelines.merge import CHALLENGER, CHAMPION, MODEL_NAME, TABLE_FILE

log = logging.getLogger(__name__)

METHOD = "multi-task"  # the evaluation row that stands for a table made with this configuration
OFFLINE = "offline_"  # version tags holding a version's offline metrics


@dataclass
class Decision:
    challenger: str
    champion: str | None
    promote: bool
    reasons: list[str]
    comparison: pd.DataFrame  # per metric: challenger, champion, change, worse


@dataclass
class Published:
    version: str
    live: online.Live
    previous: str | None  # the champion before (None: the first publish)
    changed: bool  # False when the version was already live


def compare_metrics(
    challenger: Mapping[str, float | None],
    champion: Mapping[str, float | None] | None,
    metrics: Sequence[str],
    lower_is_better: set[str],
    tolerance: float,
    absolute_tolerance: float = 0.0,
) -> tuple[bool, pd.DataFrame, list[str]]:
    """Whether the challenger may replace the champion: on no metric worse than the champion by
    more than `tolerance` relative to the champion's value or `absolute_tolerance` in the
    metric's units, whichever allows more (for a lower-is-better metric, higher counts as
    worse). The absolute allowance keeps a champion at or near 0 replaceable: from 0, any
    change is infinite. A metric the challenger lacks but the champion has is worse."""
    rows, reasons = [], []
    for metric in metrics:
        new = _number(challenger.get(metric))
        old = _number(champion.get(metric)) if champion is not None else math.nan
        if math.isnan(old):
            rows.append((metric, new, old, math.nan, False))
            continue
        if math.isnan(new):
            rows.append((metric, new, old, math.nan, True))
            reasons.append(f"{metric}: the challenger has no value, the champion {old:.4f}")
            continue
        sign = -1.0 if metric in lower_is_better else 1.0
        if old != 0:
            change = (new - old) / abs(old)
        else:  # from 0, any rise is infinite
            change = 0.0 if new == old else math.copysign(math.inf, new - old)
        allowed = max(tolerance * abs(old), absolute_tolerance)
        worse = sign * (new - old) < -allowed
        rows.append((metric, new, old, change, worse))
        if worse:
            reasons.append(
                f"{metric}: {new:.4f} against the champion's {old:.4f} ({change:+.1%}; "
                f"tolerance {tolerance:.0%} or {absolute_tolerance:g} absolute"
                f"{', lower is better' if sign < 0 else ''})"
            )
    table = pd.DataFrame(rows, columns=["metric", "challenger", "champion", "change", "worse"])
    return not table["worse"].any(), table, reasons


def run_promote(config: Config, version: str | None = None) -> Decision:
    """Decide on the challenger (or `version`): tag the decision on the version and log it.
    The champion alias itself moves when the publish step makes the table live."""
    client = mlflow.MlflowClient()
    finish_interrupted_publish(config, client)
    version = version or _alias(client, CHALLENGER)
    if version is None:
        raise DataFileError(f"{MODEL_NAME}: no challenger to promote; run the merge step first")
    found = client.get_model_version(MODEL_NAME, version)
    champion = _alias(client, CHAMPION)
    metrics = _offline_metrics(config, found)
    for key, value in metrics.items():
        client.set_model_version_tag(MODEL_NAME, version, OFFLINE + key, str(value))
    settings = config.promotion
    champion_metrics = None
    if champion is not None and champion != version:
        champion_metrics = _tagged_metrics(client.get_model_version(MODEL_NAME, champion))
    promote, comparison, reasons = compare_metrics(
        metrics,
        champion_metrics,
        settings.metrics,
        LOWER_IS_BETTER,
        settings.tolerance,
        settings.absolute_tolerance,
    )
    if found.tags.get("output_gate") != "passed":
        promote = False
        reasons.insert(0, "its output gate did not pass")
    if promote:
        reasons = [
            "already the champion"
            if champion == version
            else "no champion yet"
            if champion is None
            else f"not worse than v{champion} beyond {settings.tolerance:.0%} (or "
            f"{settings.absolute_tolerance:g} absolute) on any metric"
        ]
    params = {
        "challenger": version,
        "champion": champion or "none",
        "tolerance": settings.tolerance,
        "absolute_tolerance": settings.absolute_tolerance,
        "metrics": ",".join(settings.metrics),
    }
    with tracking.step_run("promote", params):
        logged = {f"challenger_{k}": v for k, v in metrics.items() if v is not None}
        for row in comparison.itertuples():
            if not math.isnan(row.champion):
                logged[f"champion_{row.metric}"] = row.champion
        mlflow.log_metrics({**logged, "promoted": float(promote)})
        mlflow.log_text(comparison.to_string(index=False), "comparison.txt")
        mlflow.log_text("\n".join(reasons), "decision.txt")
        mlflow.set_tag("decision", "promote" if promote else "reject")
        decision = "approved" if promote else "rejected"
        client.set_model_version_tag(MODEL_NAME, version, "promotion", decision)
        client.set_model_version_tag(MODEL_NAME, version, "promotion_reasons", "; ".join(reasons))
    log.info(
        "promotion: v%s %s against %s: %s",
        version,
        decision,
        f"champion v{champion}" if champion else "no champion",
        "; ".join(reasons),
    )
    return Decision(version, champion, promote, reasons, comparison)


def run_publish(config: Config, version: str | None = None) -> Published:
    """Make the approved challenger (or `version`) live and the champion; with nothing approved,
    make sure the champion is what readers see."""
    client = mlflow.MlflowClient()
    finish_interrupted_publish(config, client)
    champion = _alias(client, CHAMPION)
    if version is None:
        challenger = _alias(client, CHALLENGER)
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
    champion = _alias(client, CHAMPION)
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
    repo = feature_repo_dir(config)
    champion = _alias(client, CHAMPION)
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


def finish_interrupted_publish(config: Config, client: mlflow.MlflowClient | None = None) -> None:
    """If a publish made its table live but was stopped before it moved the champion alias,
    move the alias now: the pointer is the commit point."""
    client = client or mlflow.MlflowClient()
    live = online.read_live(feature_repo_dir(config))
    if live is None:
        return
    champion = _alias(client, CHAMPION)
    if champion != live.version and (champion or "") == live.champion_before:
        log.warning(
            "a publish of v%s was stopped after it went live: moving the champion alias to it",
            live.version,
        )
        _move_champion(client, live.version, live.champion_before or None, True)


def load_registered_table(version: str) -> pd.DataFrame:
    """The table registered as related-videos `version`, checked against its digest tag."""
    client = mlflow.MlflowClient()
    tags = client.get_model_version(MODEL_NAME, version).tags
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=folder
        )
        found = sorted(Path(local).rglob(TABLE_FILE))
        if not found:
            raise DataFileError(f"models:/{MODEL_NAME}/{version}: no {TABLE_FILE} among its files")
        if tags.get("table_digest") and registry.file_digest(found[0]) != tags["table_digest"]:
            raise DataFileError(
                f"models:/{MODEL_NAME}/{version}: {TABLE_FILE} does not match its table_digest"
            )
        return pd.read_parquet(found[0])


def _publish(
    config: Config,
    client: mlflow.MlflowClient,
    version: str,
    champion: str | None,
    record_previous: bool,
) -> Published:
    repo = feature_repo_dir(config)
    feature_store.ensure_online_store(repo, online_store_settings(config), feast_project(config))
    live = online.read_live(repo)
    if live is not None and live.version == version and champion == version:
        log.info("publish: v%s is already the live champion", version)
        return Published(version, live, champion, changed=False)
    params = {"version": version, "champion_before": champion or "none", "repo": repo}
    with tracking.step_run("publish", params):
        started = time.perf_counter()
        table = load_registered_table(version)
        digest = client.get_model_version(MODEL_NAME, version).tags.get("table_digest", "")
        live = online.publish_table(repo, table, version, digest, champion_before=champion or "")
        faults.checkpoint("publish:live")
        _move_champion(client, version, champion, record_previous)
        mlflow.log_params({"color": live.color, "online_store": config.serving.online_store})
        mlflow.log_metrics(
            {"videos": live.videos, "rows": live.rows, "seconds": time.perf_counter() - started}
        )
    return Published(version, live, champion, changed=True)


def _move_champion(
    client: mlflow.MlflowClient, version: str, previous: str | None, record_previous: bool
) -> None:
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    if record_previous and previous and previous != version:
        client.set_model_version_tag(MODEL_NAME, version, "previous_champion", previous)
    log.info("champion: v%s (was %s)", version, f"v{previous}" if previous else "none")


def _alias(client: mlflow.MlflowClient, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:
        return None


def _offline_metrics(config: Config, version) -> dict[str, float | None]:
    """The full method's offline metrics for the configuration and data the version was made
    from (the evaluate step's summary); a clear error when the evaluation is of something else."""
    summary = workspace.read_evaluation(config)
    tags = version.tags
    for key in ("config_digest", "data_digest"):
        if summary.get(key) != tags.get(key):
            raise DataFileError(
                f"{workspace.evaluation_dir(config)}: the last evaluation is of another "
                f"{key.split('_')[0]} ({key} {summary.get(key)}) than v{version.version} "
                f"({tags.get(key)}); run evaluate with the configuration the merge used"
            )
    return dict(summary["metrics"][METHOD])


def _tagged_metrics(version) -> dict[str, float | None]:
    return {
        key[len(OFFLINE) :]: _number(value)
        for key, value in version.tags.items()
        if key.startswith(OFFLINE)
    }


def _number(value) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan
