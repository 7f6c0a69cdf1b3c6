"""Which profile attribute and user feature columns the views carry: the ones the pipeline's
features step wrote beside the data (data/sources/columns.json), else the default data set's
(default_columns.json, kept equal to pipelines/config.yaml's default by a test).

Data sets differ in their columns (pipelines/config.yaml `datasets`), so the schemas follow them.
The repo reads files only: it imports nothing from the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "data" / "sources"
DEFAULT = HERE / "default_columns.json"


def load_columns() -> dict:
    written = SOURCES / "columns.json"
    return json.loads((written if written.exists() else DEFAULT).read_text())


COLUMNS = load_columns()
