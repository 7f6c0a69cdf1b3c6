"""The champion alias and the live pointer kept in step, for the promote and publish steps: move
the alias, and finish a publish that was stopped after its table went live but before the move.
"""

from __future__ import annotations

import logging

import mlflow

from pipelines import online, workspace
from pipelines.config import Config
from pipelines.registry import CHAMPION, MODEL_NAME, alias_version

log = logging.getLogger(__name__)


def finish_interrupted_publish(config: Config, client: mlflow.MlflowClient | None = None) -> None:
    """If a publish made its table live but was stopped before it moved the champion alias,
    move the alias now: the pointer is the commit point."""
    client = client or mlflow.MlflowClient()
    live = online.read_live(workspace.feature_repo_dir(config))
    if live is None:
        return
    champion = alias_version(client, CHAMPION)
    if champion != live.version and (champion or "") == live.champion_before:
        log.warning(
            "a publish of v%s was stopped after it went live: moving the champion alias to it",
            live.version,
        )
        move_champion(client, live.version, live.champion_before or None, True)


def move_champion(
    client: mlflow.MlflowClient, version: str, previous: str | None, record_previous: bool
) -> None:
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    if record_previous and previous and previous != version:
        client.set_model_version_tag(MODEL_NAME, version, "previous_champion", previous)
    log.info("champion: v%s (was %s)", version, f"v{previous}" if previous else "none")
