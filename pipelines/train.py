"""The train step (stage 2): training sets from Feast, the coordinating network with out-of-fold
routing, then per objective an ALS model and a two-tower model on that objective's routed
positives (the fitting itself: pipelines/stage2.py, shared with the evaluate step). Each model
is a nested MLflow run, registered in the model registry.

The item vectors and the network's out-of-fold outputs are written to the data set's `models`
folder, swapped in whole, for the merge step.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import mlflow
import pandas as pd

from pipelines import registry, tracking, workspace
from pipelines.config import Config
from pipelines.data.io import DataFileError, publish_folder
from pipelines.stage2 import Trained, fit_stage2

log = logging.getLogger(__name__)


def run_train(
    config: Config,
    until: pd.Timestamp | None = None,
    skip_two_tower: Collection[str] = (),
    use_routing: bool | None = None,
) -> Trained:
    """Stage 2 on the validated events (before `until` when given): every model registered,
    the item vectors and network outputs published to the data set's models folder. No
    two-tower model for the objectives in `skip_two_tower`; no coordinating network without
    `use_routing` (default: unless `training.routing` is never)."""
    if use_routing is None:
        use_routing = config.training.routing != "never"
    events = workspace.read_events(config, until)
    params = {
        "dataset": config.data.dataset,
        "events": len(events),
        "until": until,
        "objectives": ",".join(config.objective_names()),
        "als_engine": config.training.als_engine,
        "two_tower_skipped_by_evaluation": ",".join(skip_two_tower) or "none",
        "routing": use_routing,
    }
    tags = _version_tags(config, until)
    towers = [name for name in config.objective_names() if name not in skip_two_tower]
    with tracking.step_run("train", params), publish_folder(workspace.models_dir(config)) as folder:
        trained = fit_stage2(
            config, events, folder, tags=tags, use_routing=use_routing, two_tower_for=towers
        )
        mlflow.log_metrics({f"seconds_{name}": s for name, s in trained.seconds.items()})
    trained.folder = workspace.models_dir(config)
    return trained


def evaluated_routing(config: Config, say: bool = True) -> bool:
    """Whether the production fit trains the coordinating network: `training.routing` always
    or never; with auto, unless the offline evaluation of this configuration and data found its
    routing lifting nothing (`pipelines.evaluate._routing_decision`). `say`: log the decision."""
    mode = config.training.routing
    if mode != "auto":
        return mode == "always"
    decision = (_same_evaluation(config) or {}).get("routing") or {}
    if decision.get("kept", True):
        return True
    if say:
        log.info(
            "coordinating network not trained: in the offline evaluation's fit its routing did "
            "not lift the validation lists (%+.4f, standard error %.4f) over models learning "
            "from every positive (training.routing: always keeps it)",
            decision.get("gain", float("nan")),
            decision.get("error", float("nan")),
        )
    return False


def _same_evaluation(config: Config) -> dict | None:
    """The offline evaluation's summary when it was made from this configuration and data."""
    try:
        summary = workspace.read_evaluation(config)
    except DataFileError:
        return None
    same = summary.get("config_digest") == registry.config_digest(config.raw) and summary.get(
        "data_digest"
    ) == registry.file_digest(workspace.validated_manifest(config))
    return summary if same else None


def evaluated_two_tower_drops(config: Config, say: bool = True) -> list[str]:
    """The objectives whose two-tower side the offline evaluation of this configuration and
    data left out of the fused score: it added less than `weights.two_tower_min_gain` of
    validation AUC in the evaluation's own fit or did not lift the validation lists, its cosine
    did not raise the chance of a positive
    (the calibration has no two-tower side), or the objective had too few held-out positive
    pairs to be calibrated at all (its score was the candidate's training rate, no cosine). The
    production fit need not train them. [] without such an evaluation. `say`: log the decision."""
    summary = _same_evaluation(config)
    if summary is None:
        return []
    fusion = summary.get("fusion") or {}
    gains = fusion.get("two_tower", {})
    weak = {
        name
        for name, figures in gains.items()
        if isinstance(figures.get("gain"), float)
        and figures["gain"] < config.weights.two_tower_min_gain
    }
    flat = {name for name, figures in gains.items() if figures.get("kept") is False} - weak
    uncalibrated = {
        name for name, calibration in fusion.get("calibrations", {}).items() if calibration is None
    }
    # A calibration without a two-tower side: the cosine did not raise the chance of a positive.
    # A rejected probe leaves no side either: said above.
    no_side = {
        name
        for name, calibration in fusion.get("calibrations", {}).items()
        if calibration is not None
        and "two_tower" not in calibration.get("sides", {})
        and name not in weak | flat
    }
    if weak and say:
        log.info(
            "two-tower models not trained for %s: in the offline evaluation's fit they added "
            "less than weights.two_tower_min_gain (%s) of validation AUC",
            ", ".join(sorted(weak)),
            config.weights.two_tower_min_gain,
        )
    if flat and say:
        log.info(
            "two-tower models not trained for %s: in the offline evaluation's fit they did not "
            "lift the validation lists (recall and NDCG of weights.select_on) beyond noise",
            ", ".join(sorted(flat)),
        )
    if uncalibrated and say:
        log.info(
            "two-tower models not trained for %s: in the offline evaluation's fit too few "
            "held-out positive pairs (weights.min_positive_pairs) calibrated them, so their "
            "score was the candidate's training rate and no cosine counted",
            ", ".join(sorted(uncalibrated)),
        )
    if no_side and say:
        log.info(
            "two-tower models not trained for %s: in the offline evaluation's fit their cosine "
            "did not raise the chance of a positive pair, so the calibration left them out",
            ", ".join(sorted(no_side)),
        )
    return sorted(weak | flat | uncalibrated | no_side)


def _version_tags(config: Config, until: pd.Timestamp | None) -> dict[str, str]:
    manifest = workspace.validated_manifest(config)
    parent = mlflow.active_run()
    return {
        "dataset": config.data.dataset,
        "data_digest": registry.file_digest(manifest),
        "config_digest": registry.config_digest(config.raw),
        "training_until": str(until) if until is not None else "all",
        "pipeline_run_id": parent.info.run_id if parent else "",
    }
