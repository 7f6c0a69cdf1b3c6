"""The merge step (stage 3): objective weights from 7-day retention, then per candidate pair the
max of ALS and two-tower similarity per objective, weighted and summed, top N per video with
reasons; the output gate; the table written and registered as the MLflow model `related-videos`.

A failed gate writes nothing and registers nothing; the previous table stays as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from models.merge import MergeObjective, related_table
from models.vectors import ItemVectors
from models.weights import (
    fit_objective_weights,
    retention_labels,
    retention_window,
    user_mean_outputs,
)
from pipelines import feature_store, registry, tracking, workspace
from pipelines.candidates import read_candidate_pairs
from pipelines.config import Config
from pipelines.data.io import DataFileError, publish_folder
from pipelines.features import feature_repo_dir
from pipelines.gate_report import GateFailed, GateReport
from pipelines.related_gate import run_related_gate
from pipelines.train import models_dir, read_events

log = logging.getLogger(__name__)
TABLE_FILE = "related_table.parquet"
MODEL_NAME = "related-videos"
CHALLENGER, CHAMPION = "challenger", "champion"  # the registry aliases


@dataclass
class Merged:
    table: pd.DataFrame
    path: Path
    weights: dict[str, float]
    report: GateReport
    version: str


def related_dir(config: Config) -> Path:
    return workspace.dataset_dir(config) / "related"


def read_related_table(config: Config) -> pd.DataFrame:
    path = related_dir(config) / TABLE_FILE
    if not path.exists():
        raise DataFileError(f"{path}: no related table; run the merge step first")
    return pd.read_parquet(path)


def load_vectors(folder: Path, name: str) -> ItemVectors | None:
    path = folder / f"{name}.item_vectors.parquet"
    return ItemVectors.from_frame(pd.read_parquet(path)) if path.exists() else None


def learn_weights(config: Config, events: pd.DataFrame, outputs: pd.DataFrame):
    names = config.objective_names()
    days = config.weights.retention_days
    cutoff, window = retention_window(events, days)
    retained = retention_labels(events, cutoff, window)
    features = user_mean_outputs(outputs, names, cutoff)
    users = retained.index.intersection(features.index)
    signs = {objective.name: objective.sign for objective in config.objectives}
    return fit_objective_weights(
        features.loc[users], retained.loc[users], signs, config.seed
    ), cutoff


def merge_objectives(config: Config, learned: Mapping[str, float]) -> list[MergeObjective]:
    """Each configured objective with its sign, manual weight a_k and learned weight w_k."""
    return [
        MergeObjective(
            objective.name,
            objective.sign,
            config.merge.manual_weights.get(objective.name, 1.0),
            learned[objective.name],
        )
        for objective in config.objectives
    ]


def model_vectors(
    config: Config, folder: Path, two_tower: bool = True
) -> dict[str, tuple[ItemVectors | None, ItemVectors | None]]:
    """Per objective, the (ALS, two-tower) item vectors in `folder`; None where not trained."""
    return {
        objective.name: (
            load_vectors(folder, f"als-{objective.name}"),
            load_vectors(folder, f"two-tower-{objective.name}") if two_tower else None,
        )
        for objective in config.objectives
    }


def build_related(config: Config, until: pd.Timestamp | None = None):
    """The related table and the learned weights, from the candidates and the trained models."""
    folder = models_dir(config)
    outputs_path = folder / "coordinating_outputs.parquet"
    if not outputs_path.exists():
        raise DataFileError(f"{outputs_path}: no trained models; run the train step first")
    pairs = read_candidate_pairs(config)
    events = read_events(config, until)
    weights, cutoff = learn_weights(config, events, pd.read_parquet(outputs_path))
    objectives = merge_objectives(config, weights.weights)
    table = related_table(pairs, model_vectors(config, folder), objectives, config.merge.top_n)
    return table, pairs, weights, cutoff


def run_merge(config: Config, until: pd.Timestamp | None = None) -> Merged:
    params = {
        "top_n": config.merge.top_n,
        **{f"manual_weight_{k}": v for k, v in config.merge.manual_weights.items()},
        "retention_days": config.weights.retention_days,
    }
    with tracking.step_run("merge", params):
        started = time.perf_counter()
        table, pairs, weights, cutoff = build_related(config, until)
        mlflow.log_params({"retention_cutoff": cutoff})
        mlflow.log_metrics(
            {
                **{f"weight_{k}": v for k, v in weights.weights.items()},
                **{f"coefficient_{k}": v for k, v in weights.coefficients.items()},
                "retention_users": weights.n_users,
                "retained_share": weights.retained_share,
            }
        )
        mlflow.log_dict(weights.to_dict(), "objective_weights.json")
        if weights.clipped:
            mlflow.set_tag("clipped_weights", ",".join(weights.clipped))
        video_ids = feature_store.read_source(feature_repo_dir(config), "video_profile")[
            "video_id"
        ].unique()
        docs_dir = workspace.reports_dir(config) / "output_gate"
        report = run_related_gate(
            table, pairs, video_ids, config.merge.top_n, docs_dir, config.gate.examples
        )
        mlflow.log_artifacts(str(docs_dir), artifact_path="output_gate")
        mlflow.log_metrics(
            {
                "related_rows": len(table),
                "videos_with_list": table["video_id"].nunique(),
                "gate_failed_expectations": len(report.errors),
            }
        )
        if not report.success:
            mlflow.set_tag("gate", "failed")
            raise GateFailed(report)
        mlflow.set_tag("gate", "passed")
        with publish_folder(related_dir(config)) as scratch:
            table.to_parquet(scratch / TABLE_FILE, index=False)
        path = related_dir(config) / TABLE_FILE
        version = registry.register(
            MODEL_NAME,
            "related_table",
            {"related_table": path},
            {
                "dataset": config.data.dataset,
                "data_digest": registry.file_digest(workspace.validated_manifest(config)),
                "config_digest": registry.config_digest(config.raw),
                "table_digest": registry.file_digest(path),
                "output_gate": "passed",
                "top_n": str(config.merge.top_n),
                "training_until": str(until) if until is not None else "all",
            },
        )
        # The newest table is the challenger; the promote step decides whether it becomes the
        # champion, and publish makes the champion live.
        mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, CHALLENGER, version.version)
        mlflow.log_metric("seconds", time.perf_counter() - started)
        log.info(
            "related table: %s rows for %s videos -> %s (registered %s v%s, the challenger)",
            f"{len(table):,}",
            f"{table['video_id'].nunique():,}",
            path,
            MODEL_NAME,
            version.version,
        )
        return Merged(table, path, weights.weights, report, str(version.version))
