"""The merge step (stage 3): per objective the calibrated max of ALS and two-tower similarity,
weighted (the weighting chosen on held-out training events) and summed, top N per video with
reasons; the output gate; the table written and registered as the MLflow model `related-videos`.

A failed gate writes nothing and registers nothing; the previous table stays as it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from models.diagnostics import score_diagnostics
from pipelines import feature_store, registry, stage3, tracking, workspace
from pipelines.config import Config
from pipelines.data.io import publish_folder
from pipelines.gate_report import GateFailed, GateReport
from pipelines.registry import CHALLENGER, MODEL_NAME
from pipelines.related_gate import run_related_gate
from pipelines.workspace import TABLE_FILE

log = logging.getLogger(__name__)


@dataclass
class Merged:
    table: pd.DataFrame
    path: Path
    weights: dict[str, float]
    report: GateReport
    version: str


def build_related(config: Config, until: pd.Timestamp | None = None):
    """The related table and its fusion (calibrations, weights), from the candidates and the
    trained models."""
    folder = workspace.models_dir(config)
    pairs = workspace.read_candidate_pairs(config)
    events = workspace.read_events(config, until)
    fusion, cutoff = stage3.fit(config, folder, pairs, events)
    vectors = stage3.model_vectors(config, folder)
    table = stage3.table(config, pairs, vectors, stage3.read_priors(folder), fusion, events)
    return table, pairs, fusion, cutoff


def run_merge(config: Config, until: pd.Timestamp | None = None) -> Merged:
    params = {
        "top_n": config.merge.top_n,
        **{f"manual_weight_{k}": v for k, v in config.merge.manual_weights.items()},
        "retention_days": config.weights.retention_days,
        "weights": config.merge.weights,
        "max_tied_list_share": config.merge.max_tied_list_share,
    }
    with tracking.step_run("merge", params):
        started = time.perf_counter()
        table, pairs, fusion, cutoff = build_related(config, until)
        weights = fusion.weights
        mlflow.log_params({"retention_cutoff": cutoff, "weighting": fusion.weighting})
        mlflow.log_metrics(
            {
                **{f"weight_{k}": v for k, v in weights.weights.items()},
                **{f"coefficient_{k}": v for k, v in weights.coefficients.items()},
                **_validation_metrics(fusion),
            }
        )
        mlflow.log_dict(fusion.to_dict(), "fusion.json")
        mlflow.log_dict(weights.to_dict(), "objective_weights.json")
        if weights.clipped:
            mlflow.set_tag("clipped_weights", ",".join(weights.clipped))
        dropped = [name for name, c in fusion.calibrations.items() if c and not c.use_two_tower]
        mlflow.set_tag("two_tower_left_out", ",".join(dropped) or "none")
        diagnostics = score_diagnostics(table, stage3.signal_names(config))
        mlflow.log_metrics({f"diagnostic_{k}": v for k, v in diagnostics.items()})
        video_ids = feature_store.read_source(workspace.feature_repo_dir(config), "video_profile")[
            "video_id"
        ].unique()
        docs_dir = workspace.reports_dir(config) / "output_gate"
        report = run_related_gate(
            table,
            pairs,
            video_ids,
            config.merge.top_n,
            docs_dir,
            config.gate.examples,
            max_tied_list_share=config.merge.max_tied_list_share,
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
        with publish_folder(workspace.related_dir(config)) as scratch:
            table.to_parquet(scratch / TABLE_FILE, index=False)
        path = workspace.related_dir(config) / TABLE_FILE
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


def _validation_metrics(fusion) -> dict[str, float]:
    """The weighting options' validation figures and each two-tower side's AUC with and without
    (two_tower_auc_<with|without|gain>_<k>), its lift of the validation lists and whether it
    stayed (two_tower_<list_gain|list_error|kept>_<k>); the dislike risk guard's figures
    (risk_guard_<figure>) and the fill decision's (fills_<gain|error|kept>)."""
    figures = {
        f"validation_{option}_{name}": value
        for option, values in fusion.validation.items()
        for name, value in values.items()
    }
    for name, values in fusion.two_tower.items():
        figures.update(
            {
                f"two_tower_{'' if which.startswith(('list', 'kept')) else 'auc_'}{which}_{name}": v
                for which, v in values.items()
            }
        )
    figures.update({f"risk_guard_{which}": value for which, value in fusion.risk.items()})
    figures.update({f"fills_{which}": value for which, value in fusion.fills.items()})
    return {k: float(v) for k, v in figures.items() if v == v}
