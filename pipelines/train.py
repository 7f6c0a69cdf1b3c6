"""The train step (stage 2): training sets from Feast, the coordinating network with out-of-fold
routing, then per objective an ALS model and a two-tower model on that objective's routed
positives. Each model is a nested MLflow run, registered in the model registry.

The item vectors and the network's out-of-fold outputs are written to the data set's `models`
folder, swapped in whole, for the merge step.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from models.als import AlsParams, auc_on_holdout, fit_als
from models.candidates import pair_similarity
from models.coordinating import (
    CoordinatingInputs,
    CoordinatingParams,
    fit_final,
    objective_labels,
    oof_auc,
    out_of_fold_predictions,
    route,
    routing_report,
)
from models.profile import ProfileVocabulary
from models.two_tower import TwoTowerParams, fit_two_tower
from pipelines import feature_store, registry, tracking, truth_checks, workspace
from pipelines.candidates import profiles_from_store
from pipelines.config import Config, Objective
from pipelines.data.io import publish_folder, read_table
from pipelines.features import feature_repo_dir
from pipelines.stage3 import ALL_PRIORS_FILE, HELDOUT_FILE, PRIORS_FILE

log = logging.getLogger(__name__)

CONTEXT = ("has_source", "source_similarity", "hour_sin", "hour_cos", "log_duration")
# How each objective's user-video matrix cell is built from its routed positive events.
VALUES = {
    "clicks": lambda events: events["clicked"].astype(float),
    "log1p_play_time": lambda events: np.log1p(events["play_time_s"].astype(float)),
    "likes": lambda events: events["liked"].astype(float),
    "shares": lambda events: events["shared"].astype(float),
    "dislikes": lambda events: events["disliked"].astype(float),
}


@dataclass
class Trained:
    folder: Path
    routing: pd.DataFrame
    versions: dict[str, str] = field(default_factory=dict)  # registered name -> version
    seconds: dict[str, float] = field(default_factory=dict)  # objective -> training seconds


def models_dir(config: Config) -> Path:
    return workspace.dataset_dir(config) / "models"


def read_events(config: Config, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The validated events, only those before `until` when given (the training days)."""
    folder = workspace.validated_manifest(config).parent
    events = read_table(folder / "events.parquet")
    return events if until is None else events[events["ts"] < until].reset_index(drop=True)


def context_features(events: pd.DataFrame, matrix, video_ids: np.ndarray) -> pd.DataFrame:
    """Event context that is not a label: whether the video was shown under a source, the
    content cosine of the two (profile rows of `matrix`, in `video_ids` order), the hour of day,
    the video's length."""
    index = pd.Index(video_ids)
    source_rows = index.get_indexer(events["source_video_id"].fillna("").astype(str))
    video_rows = index.get_indexer(events["video_id"].astype(str))
    has_source = source_rows >= 0
    similarity = np.zeros(len(events))
    if has_source.any():
        similarity[has_source] = pair_similarity(
            matrix, source_rows[has_source], video_rows[has_source]
        )
    hour = events["ts"].dt.hour + events["ts"].dt.minute / 60
    return pd.DataFrame(
        {
            "has_source": has_source.astype(float),
            "source_similarity": similarity,
            "hour_sin": np.sin(2 * np.pi * hour / 24).to_numpy(),
            "hour_cos": np.cos(2 * np.pi * hour / 24).to_numpy(),
            "log_duration": np.log1p(events["duration_s"].astype(float)).to_numpy(),
        },
        index=events.index,
    )


def run_train(config: Config, until: pd.Timestamp | None = None) -> Trained:
    """Stage 2 on the validated events (before `until` when given): every model registered,
    the item vectors and network outputs published to the data set's models folder."""
    events = read_events(config, until)
    params = {
        "dataset": config.data.dataset,
        "events": len(events),
        "until": until,
        "objectives": ",".join(config.objective_names()),
        "als_engine": config.training.als_engine,
    }
    tags = _version_tags(config, until)
    with tracking.step_run("train", params), publish_folder(models_dir(config)) as folder:
        trained = fit_stage2(config, events, folder, tags=tags)
        mlflow.log_metrics({f"seconds_{name}": s for name, s in trained.seconds.items()})
    trained.folder = models_dir(config)
    return trained


def fit_stage2(
    config: Config,
    events: pd.DataFrame,
    folder: Path,
    tags: dict[str, str] | None = None,
    use_routing: bool = True,
    two_tower_for: Collection[str] | None = None,
) -> Trained:
    """Train stage 2 on `events` into `folder`, each model a nested run of the active run.

    With `tags`, every model is registered with them; without, nothing is registered (the offline
    evaluation). Without `use_routing` there is no coordinating network: each objective's models
    learn from all of its positives (the single-objective baselines and the "no CN" ablation).
    `two_tower_for` limits the two-tower models to these objectives (default: every one)."""
    repo = feature_repo_dir(config)
    started = time.perf_counter()
    matrix, video_ids, vocabulary = profiles_from_store(repo)
    frame = feature_store.historical_features(repo, events, "coordinating_network")
    frame = pd.concat([frame, context_features(frame, matrix, video_ids)], axis=1)
    log.info("training set: %s events with their features", f"{len(frame):,}")
    truth = truth_checks.load_truth(workspace.raw_dir(config))
    if use_routing:
        routed, routing, cn_version = _train_coordinating(
            config, frame, vocabulary.n_columns, folder, tags, truth
        )
        trained = Trained(folder, routing, {"coordinating-network": cn_version} if tags else {})
        trained.seconds["coordinating-network"] = time.perf_counter() - started
    else:
        pairs = [(objective.name, objective.label) for objective in config.objectives]
        labels = objective_labels(frame, pairs)
        routed = labels.astype(bool).add_prefix("routed_")
        trained = Trained(folder, routing_report(labels, routed, pairs))
    items = _catalog(matrix, video_ids)
    tower_rows = feature_store.historical_features(repo, events, "two_tower")
    rng = np.random.default_rng(config.seed)
    # One draw per event, shared by every objective: a held-out event is seen by no model, so
    # the merge can calibrate and weigh the objectives on it (write_heldout).
    held_out = rng.random(len(frame)) < config.training.holdout_share
    write_heldout(config, frame, held_out, folder)
    check = _truth_check(truth, frame, config.seed)
    for objective in config.objectives:
        begun = time.perf_counter()
        chosen = routed[f"routed_{objective.name}"].to_numpy()
        positives, towers = frame[chosen], tower_rows[chosen]
        holdout = held_out[chosen]
        if (~holdout).sum() < config.training.min_positives:
            log.warning(
                "%s: only %d routed positives (training.min_positives %d): no models; "
                "the merge scores this objective 0",
                objective.name,
                int((~holdout).sum()),
                config.training.min_positives,
            )
            mlflow.set_tag(f"skipped_{objective.name}", "too few routed positives")
            continue
        with _spark_if(config) as spark:
            versions = {
                f"als-{objective.name}": _train_als(
                    config, objective, positives, holdout, folder, tags, spark, check
                )
            }
        skipped = objective.name in config.training.two_tower_skip
        if skipped:
            log.info("%s: two-tower not trained (training.two_tower_skip)", objective.name)
        if (two_tower_for is None or objective.name in two_tower_for) and not skipped:
            versions[f"two-tower-{objective.name}"] = _train_two_tower(
                config, objective, towers, holdout, (items, vocabulary), folder, tags, check
            )
        trained.versions.update({name: v for name, v in versions.items() if v})
        trained.seconds[objective.name] = time.perf_counter() - begun
        log.info(
            "%s: %s %s positives, ALS and two-tower in %.1f s",
            objective.name,
            f"{len(positives):,}",
            "routed" if use_routing else "(all)",
            trained.seconds[objective.name],
        )
    return trained


def write_heldout(config: Config, frame: pd.DataFrame, held_out: np.ndarray, folder: Path) -> None:
    """The held-out events with each objective's label (label_<name>), and per video its events
    and positives of each objective (positives_<name>): among the events the models learn from
    (what the merge calibrates with) and among all of them (what the published table uses)."""
    pairs = [(objective.name, objective.label) for objective in config.objectives]
    labels = objective_labels(frame, pairs)
    keys = frame[["user_id", "video_id", "source_video_id", "ts"]]
    heldout = pd.concat([keys, labels.add_prefix("label_")], axis=1)[held_out]
    heldout.reset_index(drop=True).to_parquet(folder / HELDOUT_FILE, index=False)
    counts = labels.add_prefix("positives_")
    counts.insert(0, "events", 1)
    videos = frame["video_id"].astype(str).to_numpy()
    for rows, name in ((~held_out, PRIORS_FILE), (np.ones(len(frame), bool), ALL_PRIORS_FILE)):
        priors = counts[rows].groupby(videos[rows]).sum()
        priors.index.name = "video_id"
        priors.reset_index().to_parquet(folder / name, index=False)


def _train_coordinating(
    config: Config,
    frame: pd.DataFrame,
    n_columns: int,
    folder: Path,
    tags: dict[str, str] | None,
    truth,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    settings, dataset = config.coordinating, config.dataset
    objectives = [(objective.name, objective.label) for objective in config.objectives]
    params = CoordinatingParams(
        hidden_units=tuple(settings.hidden_units),
        folds=settings.folds,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        threshold=settings.threshold,
        seed=config.seed,
    )
    inputs = CoordinatingInputs(
        user_categorical=tuple(dataset.user_categorical),
        user_numeric=tuple(dataset.user_numeric),
        context_numeric=CONTEXT,
        n_columns=n_columns,
    )
    with tracking.step_run("coordinating-network", dataclasses.asdict(params)):
        labels = objective_labels(frame, objectives)
        predictions = out_of_fold_predictions(frame, objectives, inputs, params)
        routed = route(labels, predictions, objectives, settings.threshold)
        report = routing_report(labels, routed, objectives)
        auc = oof_auc(labels, predictions)
        metrics = {f"oof_auc_{name}": float(v) for name, v in auc.items() if np.isfinite(v)}
        for name, row in report.iterrows():
            metrics[f"routed_share_{name}"] = float(row.routed_share)
            metrics[f"positives_{name}"] = int(row.positives)
        if truth is not None and "p_click" in predictions:
            checks = truth_checks.routing_of_accidental_clicks(
                truth["events"], frame, predictions["p_click"].to_numpy(), settings.threshold
            )
            metrics.update({f"truth_{name}": value for name, value in checks.items()})
        mlflow.log_metrics(metrics)
        network = fit_final(frame, objectives, inputs, params)
        _log_curve(network.history)
        network.save(folder / "coordinating-network")
        outputs = pd.concat(
            [frame[["user_id", "video_id", "ts"]], predictions.drop(columns="fold")], axis=1
        )
        outputs.to_parquet(folder / "coordinating_outputs.parquet", index=False)
        mlflow.log_text(report.to_string(), "routing_report.txt")
        if tags is None:
            return routed, report, ""
        version = registry.register(
            "coordinating-network",
            "coordinating",
            {"network": folder / "coordinating-network"},
            {**tags, "objectives": ",".join(name for name, _ in objectives)},
            requirements=(*registry.REQUIREMENTS, "keras", "tensorflow-cpu"),
        )
        return routed, report, str(version.version)


def _train_als(
    config: Config,
    objective: Objective,
    positives: pd.DataFrame,
    holdout: np.ndarray,
    folder: Path,
    tags: dict[str, str] | None,
    spark,
    check,
) -> str:
    engine = config.training.als_engine
    params = AlsParams(**dataclasses.asdict(objective.als))
    name = f"als-{objective.name}"
    interactions = pd.DataFrame(
        {
            "user_id": positives["user_id"].to_numpy(),
            "video_id": positives["video_id"].to_numpy(),
            "value": VALUES[objective.value](positives).to_numpy(),
        }
    )
    with tracking.step_run(name, {**dataclasses.asdict(params), "engine": engine}):
        train, held = interactions[~holdout], interactions[holdout]
        with threadpool_limits(1, "blas"):  # implicit's advice; the env var may come too late
            model = fit_als(
                train,
                params,
                engine,
                seed=config.seed,
                spark=spark,
                calculate_training_loss=engine == "implicit",
            )
        auc = _holdout_auc(
            lambda: auc_on_holdout(model, train, held, np.random.default_rng(config.seed))
        )
        mlflow.log_metrics(
            {
                "auc_holdout": auc,
                "fit_seconds": model.fit_seconds,
                "positives": len(train),
                "holdout_positives": len(held),
                "videos_with_vector": len(model.item_vectors),
                **(
                    {"training_loss": model.training_loss}
                    if model.training_loss is not None
                    else {}
                ),
            }
        )
        mlflow.log_metrics(check(model.item_vectors))
        return _register_vectors(name, model.item_vectors, folder, tags, objective, engine)


def _train_two_tower(
    config: Config,
    objective: Objective,
    positives: pd.DataFrame,
    holdout: np.ndarray,
    catalog: tuple[pd.DataFrame, ProfileVocabulary],
    folder: Path,
    tags: dict[str, str] | None,
    check,
) -> str:
    """`catalog`: every video's profile (`_catalog`) and the profile vocabulary it indexes."""
    items, vocabulary = catalog
    settings, dataset = config.two_tower, config.dataset
    params = TwoTowerParams(
        **{**dataclasses.asdict(settings), "tower_units": tuple(settings.tower_units)},
        seed=config.seed,
    )
    name = f"two-tower-{objective.name}"
    with tracking.step_run(name, dataclasses.asdict(params)):
        train, held = positives[~holdout], positives[holdout]
        model = fit_two_tower(
            train,
            items,
            list(dataset.user_categorical),
            list(dataset.user_numeric),
            vocabulary.attribute_of_column,
            vocabulary.n_columns,
            params,
            progress=lambda epoch, logs: _epoch_done(name, epoch, logs),
        )
        auc = _holdout_auc(lambda: model.auc(held, items, np.random.default_rng(config.seed)))
        mlflow.log_metrics(
            {"auc_holdout": auc, "epochs_run": model.epochs_run, "positives": len(train)}
        )
        model.save(folder / name)
        vectors = model.item_vectors()
        mlflow.log_metrics(check(vectors))
        return _register_vectors(name, vectors, folder, tags, objective, "keras")


def _truth_check(truth, frame: pd.DataFrame, seed: int):
    """On synthetic data, a function from item vectors to truth metrics; else one giving none."""
    if truth is None:
        return lambda vectors: {}
    events_per_video = frame.groupby("video_id").size().to_dict()

    def check(vectors) -> dict[str, float]:
        found = truth_checks.series_neighbours(
            vectors, truth["videos"], events_per_video, seed=seed
        )
        return {f"truth_{name}": value for name, value in found.items()}

    return check


def _holdout_auc(compute) -> float:
    """AUC on the held-out positives; NaN (with a warning) when there are too few to tell."""
    try:
        return float(compute())
    except ValueError as error:
        log.warning("no held-out AUC: %s", error)
        return float("nan")


def _register_vectors(name, vectors, folder: Path, tags, objective: Objective, engine: str) -> str:
    """Write the item vectors; register them when there are version tags ("" otherwise)."""
    path = folder / f"{name}.item_vectors.parquet"
    vectors.to_frame().to_parquet(path, index=False)
    if tags is None:
        return ""
    version = registry.register(
        name,
        "item_vectors",
        {"item_vectors": path},
        {**tags, "objective": objective.name, "engine": engine},
        signature=registry.item_vectors_signature(list(vectors.video_ids[:2]), 10),
    )
    return str(version.version)


def _catalog(matrix, video_ids: np.ndarray) -> pd.DataFrame:
    """Every video's current profile: the two-tower item tower's input."""
    return pd.DataFrame(
        {"video_id": video_ids, "profile_indices": [list(row.indices) for row in matrix]}
    )


def _epoch_done(name: str, epoch: int, logs: dict) -> None:
    """A two-tower epoch's figures: logged as it ends, and into the run's curve (live in the UI)."""
    figures = {k: float(v) for k, v in (logs or {}).items() if np.isscalar(v)}
    mlflow.log_metrics({f"curve_{k}": v for k, v in figures.items()}, step=epoch)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if k.endswith("loss"))
    log.info("%s: epoch %d: %s", name, epoch + 1, shown)


def _log_curve(history) -> None:
    """Per-epoch training figures as MLflow metric steps (the training curve)."""
    frame = pd.DataFrame(history)
    for step, row in enumerate(frame.to_dict("records")):
        mlflow.log_metrics({f"curve_{k}": float(v) for k, v in row.items()}, step=step)


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


@contextmanager
def _spark_if(config: Config) -> Iterator[object | None]:
    if config.training.als_engine != "spark":
        yield None
        return
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(config.training.spark_master)
        .appName("related-videos-als")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    # Long ALS lineages overflow the stack without checkpoints (the paper's like: 26 iterations).
    spark.sparkContext.setCheckpointDir(str(config.workspace.resolve() / "spark-checkpoints"))
    yield spark
