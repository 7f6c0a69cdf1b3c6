"""The Feast repo stands alone: it imports nothing from the pipeline, and its default column list
is the default data set's of pipelines/config.yaml."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from pipelines.config import load_config

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def test_the_feature_repo_imports_nothing_from_the_pipeline():
    for path in REPO.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] in ("pipelines", "models")], path


def test_the_default_columns_are_the_default_data_sets():
    config = load_config()
    dataset = config.dataset
    assert json.loads((REPO / "default_columns.json").read_text()) == {
        "dataset": config.data.dataset,
        "video_attributes": dict(dataset.video_attributes),
        "user_categorical": list(dataset.user_categorical),
        "user_numeric": list(dataset.user_numeric),
    }
