"""The configuration a workspace remembers from `main --config`: stored resolved and redacted,
read back by later commands that give no --config, never by `demo`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from pipelines import cli
from pipelines.config import load_config
from pipelines.remembered import load_remembered, remember, remembered_path

MINE = """
data: {dataset: mysite}
paths: {workspace: ws}
serving: {redis: "redis://:hunter2@cache:6379"}
merge: {top_n: 7}
datasets:
  mysite:
    video_attributes: {category: single}
    user_categorical: []
    user_numeric: [age]
    source_window: 30min
    files: {videos: data/videos.csv, users: data/users.csv, events: data/events.csv}
"""


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "mine.yaml"
    path.parent.mkdir()
    path.write_text(MINE)
    return path


def test_the_stored_configuration_is_absolute_and_redacted(mine: Path, caplog):
    config = load_config(mine)
    stored = remember(config)
    assert stored == remembered_path(mine.parent / "ws")
    text = stored.read_text()
    assert "hunter2" not in text and "***" in text
    raw = yaml.safe_load(text)
    assert raw["datasets"]["mysite"]["files"]["events"] == str(mine.parent / "data/events.csv")
    with caplog.at_level(logging.INFO):
        again = load_remembered(mine.parent / "ws", ["merge.top_n=9"])
    assert again.data.dataset == "mysite" and again.merge.top_n == 9
    assert again.dataset.files == config.dataset.files
    assert again.serving.redis == load_config().serving.redis  # the secret is not read back
    assert "serving.redis held a secret" in caplog.text
    assert "using the configuration this workspace remembers" in caplog.text
    assert load_remembered(mine.parent / "elsewhere") is None


def test_commands_without_config_read_what_main_config_left(mine: Path, monkeypatch, tmp_path):
    import pipelines.main

    def stop(config, force=()):
        raise ValueError("stopped before the chain")

    monkeypatch.setattr(pipelines.main, "run_main", stop)
    assert cli.main(["--config", str(mine), "main"]) == cli.EXIT_DATA
    assert remembered_path(mine.parent / "ws").is_file()

    seen = []
    monkeypatch.setattr(cli, "_run", lambda args, config: seen.append(config) or 0)
    workspace = str(mine.parent / "ws")
    for command in (["related", "v1"], ["serve"], ["promote"], ["publish"], ["rollback"]):
        assert cli.main(["--workspace", workspace, *command]) == 0
    assert {c.data.dataset for c in seen} == {"mysite"}
    assert {c.merge.top_n for c in seen} == {7}
    seen.clear()
    assert cli.main(["--workspace", workspace, "demo"]) == 0  # demo: the embedded defaults
    assert cli.main(["--workspace", workspace, "--config", str(mine), "related", "v1"]) == 0
    other = tmp_path / "other"
    assert cli.main(["--workspace", str(other), "related", "v1"]) == 0
    assert [c.data.dataset for c in seen] == ["synthetic", "mysite", "synthetic"]
