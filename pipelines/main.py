"""The whole chain as one parent MLflow run: bring the data (generate or ingest), gate it,
publish the features to Feast, find the candidate pairs (stage 1), then train the coordinating
network and the per-objective models (stage 2), merge them into the related-video table (stage 3,
gated and registered). Later stages (evaluate, promote, publish) join this chain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import yaml

from pipelines import tracking
from pipelines.candidates import Candidates, run_candidates
from pipelines.config import Config
from pipelines.features import Features, run_features
from pipelines.generate import run_generate
from pipelines.ingest import run_ingest
from pipelines.merge import Merged, run_merge
from pipelines.train import Trained, run_train
from pipelines.validate import Validated, run_validate

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    run_id: str
    tracking_uri: str
    validated: Validated
    features: Features
    candidates: Candidates
    trained: Trained
    merged: Merged


def run_main(config: Config, progress: bool = True) -> PipelineResult:
    uri = tracking.configure_for(config)
    dataset = config.data.dataset
    with mlflow.start_run(run_name="pipeline", tags={"dataset": dataset}) as parent:
        mlflow.log_text(yaml.safe_dump(config.raw, sort_keys=False), "config.yaml")
        mlflow.log_params({"dataset": dataset, "seed": config.seed})
        if dataset == "synthetic":
            run_generate(config, progress=progress)
        elif dataset == "kuairand":
            run_ingest(config)
        validated = run_validate(config)
        features = run_features(config)
        candidates = run_candidates(config, progress=progress)
        trained = run_train(config, progress=progress)
        merged = run_merge(config)
        return PipelineResult(
            parent.info.run_id, uri, validated, features, candidates, trained, merged
        )
