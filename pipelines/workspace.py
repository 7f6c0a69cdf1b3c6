"""Where each step reads and writes: one workspace folder, one subfolder per data set.

workspace/data/<dataset>/raw (generated or imported), .../validated (passed the input gate),
workspace/reports/<dataset>/ (gate data docs), workspace/mlflow.db and mlartifacts/ (MLflow).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.config import Config, ConfigError
from pipelines.data.contract import TABLES
from pipelines.data.io import DataFileError, find_table


def dataset_dir(config: Config) -> Path:
    return config.workspace / "data" / config.data.dataset


def raw_dir(config: Config) -> Path:
    return dataset_dir(config) / "raw"


def validated_dir(config: Config) -> Path:
    return dataset_dir(config) / "validated"


def validated_manifest(config: Config) -> Path:
    """The manifest of the validated tables; a clear error if the gate has not passed yet."""
    manifest = validated_dir(config) / "manifest.json"
    if not manifest.exists():
        raise DataFileError(
            f"{validated_dir(config)}: no validated tables; run the validate step first"
        )
    return manifest


def evaluation_dir(config: Config) -> Path:
    """The offline evaluation's models, lists and summary (evaluation.json)."""
    return dataset_dir(config) / "evaluation"


EVALUATION_SUMMARY = "evaluation.json"


def read_evaluation(config: Config) -> dict:
    """The last evaluation's summary (methods, baseline, split, digests, metrics, run id)."""
    path = evaluation_dir(config) / EVALUATION_SUMMARY
    if not path.exists():
        raise DataFileError(f"{path}: no offline evaluation; run the evaluate step first")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise DataFileError(f"{path}: not readable JSON ({error})") from error


def reports_dir(config: Config) -> Path:
    return config.workspace / "reports" / config.data.dataset


def input_files(config: Config) -> dict[str, Path]:
    """The three input tables: the data set's configured `files` if given (bring your own
    data), else what `generate` or `ingest` wrote into the workspace."""
    files = config.dataset.files
    if files:
        missing = [name for name in TABLES if name not in files]
        if missing:
            raise ConfigError(
                f"datasets.{config.data.dataset}.files: no path for {', '.join(missing)}"
            )
        return {name: Path(files[name]) for name in TABLES}
    return {name: find_table(raw_dir(config), name) for name in TABLES}
