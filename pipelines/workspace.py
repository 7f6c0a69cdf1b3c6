"""Where each step reads and writes: one workspace folder, one subfolder per data set, and the
readers of what each step publishes (so no step needs another step's module to find or read it).

workspace/data/<dataset>/raw (generated or imported), .../validated (passed the input gate),
.../feature_repo, .../candidates, .../models, .../related, .../evaluation (the steps' outputs),
workspace/reports/<dataset>/ (gate data docs, the evaluation report), workspace/mlflow.db and
mlartifacts/ (MLflow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipelines.config import Config, ConfigError
from pipelines.data.contract import TABLES
from pipelines.data.io import DataFileError, find_table, read_table

PAIRS_FILE = "candidate_pairs.parquet"  # the candidates step's pairs
TABLE_FILE = "related_table.parquet"  # the merge step's related table
EVALUATION_SUMMARY = "evaluation.json"  # the evaluate step's summary
# In a folder of stage-2 models (train's, or the evaluation's): what stage 3 learns from.
HELDOUT_FILE = "heldout_events.parquet"  # events no stage-2 model saw
PRIORS_FILE = "video_priors.parquet"  # per video, among the events the models learnt from
ALL_PRIORS_FILE = "video_priors_all.parquet"  # per video, among every training event
OUTPUTS_FILE = "coordinating_outputs.parquet"  # the coordinating network's outputs per event


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


def read_events(config: Config, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The validated events, only those before `until` when given (the training days)."""
    folder = validated_manifest(config).parent
    events = read_table(folder / "events.parquet")
    return events if until is None else events[events["ts"] < until].reset_index(drop=True)


def feature_repo_dir(config: Config) -> Path:
    """The data set's Feast repo (the features step's sources, registry and online store)."""
    return dataset_dir(config) / "feature_repo"


def candidates_dir(config: Config) -> Path:
    return dataset_dir(config) / "candidates"


def read_candidate_pairs(config: Config) -> pd.DataFrame:
    return read_table(candidates_dir(config) / PAIRS_FILE)


def models_dir(config: Config) -> Path:
    """The train step's item vectors, network outputs and held-out events."""
    return dataset_dir(config) / "models"


def related_dir(config: Config) -> Path:
    return dataset_dir(config) / "related"


def read_related_table(config: Config) -> pd.DataFrame:
    path = related_dir(config) / TABLE_FILE
    if not path.exists():
        raise DataFileError(f"{path}: no related table; run the merge step first")
    return pd.read_parquet(path)


def evaluation_dir(config: Config) -> Path:
    """The offline evaluation's models, lists and summary (evaluation.json)."""
    return dataset_dir(config) / "evaluation"


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


def evaluation_report_dir(config: Config) -> Path:
    """The offline evaluation's report (report.html and its plots)."""
    return reports_dir(config) / "evaluation"


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
