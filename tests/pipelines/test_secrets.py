"""Secrets stay out of what is logged and stored: a password planted in serving.redis and in
mlflow.tracking_uri is absent from the log, live.json and the run's config.yaml artifact."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipelines import feature_store, online, tracking
from pipelines.config import load_config
from pipelines.feature_store import feast_project, online_store_settings
from pipelines.main import log_configuration
from pipelines.redaction import MASK, redact, redact_config
from tests.pipelines.redis_server import running_redis

PASSWORD = "pl4nted-Pa55word"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"redis://:{PASSWORD}@db:6379/0", f"redis://:{MASK}@db:6379/0"),
        (f"redis://default:{PASSWORD}@db:6379", f"redis://default:{MASK}@db:6379"),
        (f"db:6379,db=0,password={PASSWORD},ssl=true", f"db:6379,db=0,password={MASK},ssl=true"),
        (f"http://user:{PASSWORD}@mlflow:5000", f"http://user:{MASK}@mlflow:5000"),
        (f"postgresql://u:{PASSWORD}@pg/mlflow", f"postgresql://u:{MASK}@pg/mlflow"),
        (f"https://mlflow/api?token={PASSWORD}&x=1", f"https://mlflow/api?token={MASK}&x=1"),
        (f"https://{PASSWORD}@git.example/repo", f"https://{MASK}@git.example/repo"),
        # nothing secret: unchanged
        ("localhost:6379", "localhost:6379"),
        ("sqlite:////tmp/w/mlflow.db", "sqlite:////tmp/w/mlflow.db"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("redis://db:6379/0", "redis://db:6379/0"),
    ],
)
def test_redact_masks_the_secret_part_only(text, expected):
    assert redact(text) == expected


def test_redact_config_walks_mappings_and_lists():
    raw = {
        "serving": {"redis": f"db:6379,password={PASSWORD}", "port": 8000},
        "x": [f"a?token={PASSWORD}"],
    }
    redacted = redact_config(raw)
    assert PASSWORD not in str(redacted)
    assert redacted["serving"]["port"] == 8000 and PASSWORD in str(raw)  # the original is kept


def related_rows(videos: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"video_id": v, "rank": 1, "related_video_id": w, "score": 0.5, "reason": "shares x"}
            for v, w in zip(videos, videos[1:] + videos[:1], strict=True)
        ]
    )


def test_a_planted_password_is_in_no_log_pointer_or_artifact(tmp_path, caplog, mlflow_store):
    caplog.set_level(logging.DEBUG)
    (tmp_path / "redis").mkdir()
    with running_redis(tmp_path / "redis", password=PASSWORD) as server:
        config = load_config(
            overrides=[
                f"paths.workspace={tmp_path / 'workspace'}",
                "serving.online_store=redis",
                f"serving.redis={server.host}:{server.port},password={PASSWORD}",
                f"mlflow.tracking_uri=http://user:{PASSWORD}@mlflow.example:5000",
            ]
        )
        # The publish path: the repo pointed at the configured Redis (logged), a table made live.
        repo = feature_store.deploy_repo(tmp_path / "feature_repo")
        feature_store.ensure_online_store(
            repo, online_store_settings(config), feast_project(config)
        )
        live = online.publish_table(repo, related_rows(["v1", "v2", "v3"]), "1")
        # The reader takes the real connection string from the repo, not from the pointer.
        assert online.read_live(repo) == live
        assert online.read_related(repo, ["v1"])["v1"].related_video_ids == ["v2"]
        assert "password" in (repo / "feature_store.yaml").read_text()  # Feast's own settings

    pointer = (online.related_folder(repo) / online.LIVE_FILE).read_text()
    assert PASSWORD not in pointer and f"password={MASK}" in pointer
    assert "online store now" in caplog.text
    assert PASSWORD not in caplog.text

    # The pipeline run's configuration artifact (logged into the session's local store).
    tracking.configure(Path(mlflow_store.removeprefix("sqlite:///")).parent, "secrets")
    with mlflow.start_run(run_name="pipeline") as run:
        log_configuration(config)
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="config.yaml", dst_path=str(tmp_path / "artifacts")
    )
    stored = Path(local).read_text()
    assert PASSWORD not in stored
    assert f"http://user:{MASK}@mlflow.example:5000" in stored and f"password={MASK}" in stored
