"""Stage 3 from a folder of trained stage-2 models, shared by the merge and evaluate steps: the
fusion fitted on the folder's held-out events, and the related table it gives candidate pairs.

No MLflow here: the steps log what `fit` returns.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from models.calibration import COCLICKS, COOCCURRENCE
from models.cooccurrence import pair_cooccurrence
from models.fusion import (
    RISK,
    Fusion,
    FusionObjective,
    FusionSettings,
    fit_fusion,
    judge_two_towers,
    signal_scores,
)
from models.merge import MergeObjective, related_table
from models.vectors import ItemVectors
from models.weights import (
    ObjectiveWeights,
    fit_objective_weights,
    retention_labels,
    retention_window,
    user_mean_outputs,
)
from pipelines.config import Config
from pipelines.data.io import DataFileError
from pipelines.workspace import ALL_PRIORS_FILE, HELDOUT_FILE, OUTPUTS_FILE, PRIORS_FILE

log = logging.getLogger(__name__)


Vectors = dict[str, tuple[ItemVectors | None, ItemVectors | None]]


def load_vectors(folder: Path, name: str) -> ItemVectors | None:
    path = folder / f"{name}.item_vectors.parquet"
    return ItemVectors.from_frame(pd.read_parquet(path)) if path.exists() else None


def model_vectors(config: Config, folder: Path, two_tower: bool = True) -> Vectors:
    """Per objective, the (ALS, two-tower) item vectors in `folder`; None where not trained."""
    return {
        objective.name: (
            load_vectors(folder, f"als-{objective.name}"),
            load_vectors(folder, f"two-tower-{objective.name}") if two_tower else None,
        )
        for objective in config.objectives
    }


def read_priors(folder: Path, every_event: bool = True) -> pd.DataFrame:
    """Per video (index), its training events and positives_<name> per objective: over every
    training event (for the tables), or without the held-out ones (to fit the fusion)."""
    path = folder / (ALL_PRIORS_FILE if every_event else PRIORS_FILE)
    if not path.exists():
        raise DataFileError(f"{path}: no video priors; run the train step again")
    return pd.read_parquet(path).set_index("video_id")


def retention_weights(
    config: Config, events: pd.DataFrame, outputs: pd.DataFrame
) -> tuple[ObjectiveWeights | None, pd.Timestamp | None]:
    """The paper's weights: 7-day retention on the users' mean network outputs; None (warned)
    when the log cannot give them (no user seen on both sides of the cut-off)."""
    names = config.objective_names()
    try:
        cutoff, window = retention_window(events, config.weights.retention_days)
        retained = retention_labels(events, cutoff, window)
        features = user_mean_outputs(outputs, names, cutoff)
        users = retained.index.intersection(features.index)
        signs = {objective.name: objective.sign for objective in config.objectives}
        weights = fit_objective_weights(
            features.loc[users], retained.loc[users], signs, config.seed
        )
    except ValueError as error:
        log.warning("objective weights: no retention weights (%s)", error)
        return None, None
    return weights, cutoff


def fusion_objectives(config: Config) -> list[FusionObjective]:
    return [
        FusionObjective(o.name, o.sign, config.merge.manual_weights.get(o.name, 1.0))
        for o in config.objectives
    ]


def fusion_settings(config: Config) -> FusionSettings:
    settings = config.weights
    return FusionSettings(
        at=config.evaluation.at,
        select_on=tuple(settings.select_on),
        learn_from=tuple(settings.learn_from),
        min_positives=settings.min_positive_pairs,
        validation_share=settings.validation_share,
        prior_strength=settings.prior_strength,
        two_tower_min_gain=settings.two_tower_min_gain,
        listwise=settings.listwise,
        selection_z=settings.selection_z,
        evidence=tuple(settings.evidence),
        popularity_of=settings.popularity_of,
        gated_first=gated_first(config),
        risk_guard=settings.risk_guard,
        risk_penalties=tuple(settings.risk_penalties),
    )


def gated_first(config: Config) -> bool | None:
    """Whether pairs that only fill a short list rank after the gated ones (else by score; None:
    the fusion decides on validation)."""
    return {"after_gated": True, "by_score": False}.get(config.candidates.fill_ranks)


def signal_names(config: Config) -> list[str]:
    """The merge's signals: the objectives, the pair evidence the weighting may weigh, then the
    candidate's risk where a guard may subtract it."""
    risk = [RISK] if config.weights.risk_guard != "none" else []
    return [*config.objective_names(), *config.weights.evidence, *risk]


def fit(
    config: Config,
    folder: Path,
    pairs: pd.DataFrame,
    events: pd.DataFrame,
    weighting: str | None = None,
    vectors: Vectors | None = None,
) -> tuple[Fusion, pd.Timestamp | None]:
    """The fusion of the models in `folder` (or the `vectors` given) over `pairs`, learnt from
    the folder's held-out events; retention weights from `events` (the same training days)."""
    outputs_path, heldout_path = folder / OUTPUTS_FILE, folder / HELDOUT_FILE
    if not heldout_path.exists():
        raise DataFileError(f"{heldout_path}: no trained models; run the train step first")
    retention, cutoff = (
        retention_weights(config, events, pd.read_parquet(outputs_path))
        if outputs_path.exists()
        else (None, None)
    )
    heldout = pd.read_parquet(heldout_path)
    fusion = fit_fusion(
        with_cooccurrence(pairs, _without(events, heldout)),
        model_vectors(config, folder) if vectors is None else vectors,
        read_priors(folder, every_event=False),
        heldout,
        fusion_objectives(config),
        fusion_settings(config),
        retention,
        weighting or config.merge.weights,
    )
    log.info(
        "objective weights: %s (%s); validation %s",
        fusion.weighting,
        ", ".join(f"{k} {v:.3f}" for k, v in fusion.weights.weights.items()),
        "; ".join(
            f"{option}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
            for option, figures in fusion.validation.items()
        ),
    )
    return fusion, cutoff


def two_tower_figures(
    config: Config, folder: Path, pairs: pd.DataFrame, events: pd.DataFrame, list_z: float
) -> dict[str, dict[str, float]]:
    """The fusion's two-tower test alone on the models in `folder` (as `fit` would run it, but
    the list test at `list_z` standard errors), without the weighting."""
    heldout = pd.read_parquet(folder / HELDOUT_FILE)
    return judge_two_towers(
        with_cooccurrence(pairs, _without(events, heldout)),
        model_vectors(config, folder),
        read_priors(folder, every_event=False),
        heldout,
        fusion_objectives(config),
        dataclasses.replace(fusion_settings(config), selection_z=list_z),
    )


def with_cooccurrence(pairs: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The pairs with their co-click evidence in `events` (the calibrations' pair features): the
    Jaccard of the two videos' clicking users and log1p of their count."""
    count, jaccard = pair_cooccurrence(
        pairs["source_video_id"].to_numpy(), pairs["candidate_video_id"].to_numpy(), events
    )
    return pairs.assign(**{COOCCURRENCE: jaccard, COCLICKS: np.log1p(count)})


def _without(events: pd.DataFrame, heldout: pd.DataFrame) -> pd.DataFrame:
    """The events the models learnt from: `events` less the held-out ones."""
    keys = ["user_id", "video_id", "ts"]
    held = pd.MultiIndex.from_frame(heldout[keys].astype({"video_id": str}))
    mine = pd.MultiIndex.from_frame(events[keys].astype({"video_id": str}))
    return events[~mine.isin(held)]


def table(
    config: Config,
    pairs: pd.DataFrame,
    vectors: Vectors,
    priors: pd.DataFrame,
    fusion: Fusion,
    events: pd.DataFrame,
    weights: Mapping[str, float] | None = None,
    two_tower: bool | None = None,
) -> pd.DataFrame:
    """The related table of `pairs` under `fusion` (its weights, or `weights`; its two-tower
    decisions, or `two_tower` for every objective), with the co-click evidence of `events`
    (every training event)."""
    objectives = fusion_objectives(config)
    scores = signal_scores(
        with_cooccurrence(pairs, events),
        vectors,
        priors,
        fusion.calibrations,
        objectives,
        fusion_settings(config),
        two_tower,
    )
    chosen = fusion.weights.weights if weights is None else weights
    merge = [MergeObjective(o.name, o.sign, o.manual_weight, chosen[o.name]) for o in objectives]
    # The evidence adds with its learnt weight (0 under weights that know only objectives).
    merge += [
        MergeObjective(name, 1, 1.0, chosen.get(name, 0.0)) for name in config.weights.evidence
    ]
    if config.weights.risk_guard != "none":
        merge.append(MergeObjective(RISK, -1, 1.0, chosen.get(RISK, 0.0)))
    return related_table(pairs, scores, merge, config.merge.top_n, fusion.gated_first)
