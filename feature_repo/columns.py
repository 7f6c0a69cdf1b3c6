"""Which profile attribute and user feature columns the views carry: the ones the pipeline's
features step wrote beside the data (data/sources/columns.json), else the default data set's.

Data sets differ in their columns (pipelines/config.yaml `datasets`), so the schemas follow them.
"""

from __future__ import annotations

import json
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "data" / "sources"


def load_columns() -> dict:
    written = SOURCES / "columns.json"
    if written.exists():
        return json.loads(written.read_text())
    from pipelines.config import load_config

    dataset = load_config().dataset
    return {
        "dataset": load_config().data.dataset,
        "video_attributes": dataset.video_attributes,
        "user_categorical": dataset.user_categorical,
        "user_numeric": dataset.user_numeric,
    }


COLUMNS = load_columns()
