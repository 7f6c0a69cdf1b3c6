"""Stage-2 fitting, shared by the train step (every model registered) and the evaluate step
(fit on the training days, nothing registered): the coordinating network, then ALS and two-tower.

Training sets come from Feast; the item vectors, the network's out-of-fold outputs and the held-out
events are written to the folder the caller gives.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from models.als import auc_at_positions, coded_interaction_matrix, fit_als_matrix, sorted_codes
from models.candidates import pair_similarity
from models.objectives import matrix_values
from models.params import TwoTowerParams
from models.routing import (
    CoordinatingInputs,
    combine_folds,
    objective_labels,
    oof_auc,
    route,
    routing_report,
)
from pipelines import feature_store, fit_jobs, hooks, parallel, registry, tracking, workspace
from pipelines.config import Config, Objective
from pipelines.stage1 import profiles_from_store
from pipelines.workspace import ALL_PRIORS_FILE, HELDOUT_FILE, OUTPUTS_FILE, PRIORS_FILE

log = logging.getLogger(__name__)

CONTEXT = ("has_source", "source_similarity", "hour_sin", "hour_cos", "log_duration")


class TrainingSet:
    """Training events with their features from Feast, each feature service read once, when
    first needed: one set serves every stage-2 fit on the same events (the evaluation makes up
    to four, and most of them fit no two-tower model)."""

    def __init__(self, config: Config, events: pd.DataFrame) -> None:
        self.repo = workspace.feature_repo_dir(config)
        self.events = events

    @functools.cached_property
    def profiles(self) -> tuple:
        return profiles_from_store(self.repo)

    @functools.cached_property
    def frame(self) -> pd.DataFrame:
        """The coordinating network's features and the events' context, one row per event."""
        matrix, video_ids, _ = self.profiles
        frame = feature_store.historical_features(self.repo, self.events, "coordinating_network")
        frame = pd.concat([frame, context_features(frame, matrix, video_ids)], axis=1)
        log.info("training set: %s events with their features", f"{len(frame):,}")
        return frame

    @functools.cached_property
    def codes(self) -> IdCodes:
        """The events' user and video ids encoded once for every ALS matrix cut from them."""
        return IdCodes.of(self.frame)

    @functools.cached_property
    def tower_rows(self) -> pd.DataFrame:
        """The two-tower models' user features, one row per event."""
        return feature_store.historical_features(self.repo, self.events, "two_tower")


@dataclass(frozen=True)
class IdCodes:
    """Per event, its user's and its video's position among the sorted distinct ids."""

    users: np.ndarray
    user_ids: np.ndarray
    videos: np.ndarray
    video_ids: np.ndarray

    @classmethod
    def of(cls, events: pd.DataFrame) -> IdCodes:
        users, user_ids = sorted_codes(events["user_id"])
        videos, video_ids = sorted_codes(events["video_id"].astype(str))
        return cls(users, user_ids, videos, video_ids)

    def take(self, rows: np.ndarray) -> IdCodes:
        return IdCodes(self.users[rows], self.user_ids, self.videos[rows], self.video_ids)


@dataclass
class Trained:
    folder: Path
    routing: pd.DataFrame
    versions: dict[str, str] = field(default_factory=dict)  # registered name -> version
    seconds: dict[str, float] = field(default_factory=dict)  # objective -> training seconds


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


def fit_stage2(
    config: Config,
    events: pd.DataFrame,
    folder: Path,
    tags: dict[str, str] | None = None,
    use_routing: bool = True,
    two_tower_for: Collection[str] | None = None,
    als: bool = True,
    tower_params: TwoTowerParams | None = None,
    training: TrainingSet | None = None,
) -> Trained:
    """Train stage 2 on `events` into `folder`, each model a nested run of the active run.

    With `tags`, every model is registered with them; without, nothing is registered (the offline
    evaluation). Without `use_routing` there is no coordinating network: each objective's models
    learn from all of its positives (the single-objective baselines and the "no CN" ablation).
    `two_tower_for` limits the two-tower models to these objectives (default: every one).
    Without `als`, only two-tower models are added to a folder this function filled before
    with the same events and `use_routing` (its network's routing, held-out events and ALS
    stay). `tower_params`: the two-tower settings (default: the configuration's). `training`:
    `events` with their features, when several fits share them."""
    started = time.perf_counter()
    training = TrainingSet(config, events) if training is None else training
    if len(training.events) != len(events):
        raise ValueError(
            f"stage 2: a training set of {len(training.events):,} events given for {len(events):,}"
        )
    matrix, video_ids, vocabulary = training.profiles
    frame = training.frame
    checks = hooks.training_checks(config, frame)  # the synthetic data set's truth checks
    workers = parallel.worker_count(config.training.workers)
    if len(events) < config.training.parallel_min_events:
        workers = 1
    with parallel.JobPool(workers) as pool:
        if not als:
            routed = _routed_before(config, frame, folder, use_routing)
            trained = Trained(folder, pd.DataFrame())
        elif use_routing:
            routed, routing, cn_version = _train_coordinating(
                config, frame, vocabulary.n_columns, folder, tags, checks, pool
            )
            trained = Trained(folder, routing, {"coordinating-network": cn_version} if tags else {})
            trained.seconds["coordinating-network"] = time.perf_counter() - started
        else:
            pairs = [(objective.name, objective.label) for objective in config.objectives]
            labels = objective_labels(frame, pairs)
            routed = labels.astype(bool).add_prefix("routed_")
            trained = Trained(folder, routing_report(labels, routed, pairs))
        rng = np.random.default_rng(config.seed)
        # One draw per event, shared by every objective: a held-out event is seen by no model,
        # so the merge can calibrate and weigh the objectives on it (write_heldout).
        held_out = rng.random(len(frame)) < config.training.holdout_share
        if als:
            write_heldout(config, frame, held_out, folder)
        check = checks.item_vectors if checks is not None else _no_checks
        chosen = {}
        for objective in config.objectives:
            rows = routed[f"routed_{objective.name}"].to_numpy()
            if (~held_out[rows]).sum() >= config.training.min_positives:
                chosen[objective.name] = rows
                continue
            if not als:  # said when the folder was filled
                continue
            log.warning(
                "%s: only %d routed positives (training.min_positives %d): no models; "
                "the merge scores this objective 0",
                objective.name,
                int((~held_out[rows]).sum()),
                config.training.min_positives,
            )
            mlflow.set_tag(f"skipped_{objective.name}", "too few routed positives")
        towers = [
            objective
            for objective in config.objectives
            if objective.name in chosen
            and (two_tower_for is None or objective.name in two_tower_for)
            and not _skipped(config, objective)
        ]
        catalog = fit_jobs.TowerInputs(
            _catalog(matrix, video_ids),
            vocabulary.attribute_of_column,
            vocabulary.n_columns,
            tuple(config.dataset.user_categorical),
            tuple(config.dataset.user_numeric),
        )
        # The two-tower fits go to the workers first; the ALS fits run here meanwhile.
        params = config.two_tower if tower_params is None else tower_params
        tower_rows = training.tower_rows if towers else None
        jobs = [
            _two_tower_job(
                o, tower_rows[chosen[o.name]], held_out[chosen[o.name]], catalog, folder, params
            )
            for o in towers
        ]
        batch = pool.start("two-tower models", jobs)
        for objective in config.objectives:
            if objective.name not in chosen or not als:
                continue
            begun, rows = time.perf_counter(), chosen[objective.name]
            with _spark_if(config) as spark:
                version = _train_als(
                    config,
                    objective,
                    frame[rows],
                    held_out[rows],
                    training.codes.take(rows),
                    folder,
                    tags,
                    spark,
                    check,
                )
            trained.versions[f"als-{objective.name}"] = version
            trained.seconds[objective.name] = time.perf_counter() - begun
            log.info(
                "%s: %s %s positives, ALS in %.1f s",
                objective.name,
                f"{int(rows.sum()):,}",
                "routed" if use_routing else "(all)",
                trained.seconds[objective.name],
            )

        def tower_done(i: int, fit: fit_jobs.TwoTowerFit) -> None:
            objective = towers[i]
            name = f"two-tower-{objective.name}"
            positives = int((~held_out[chosen[objective.name]]).sum())
            trained.versions[name] = _log_two_tower(
                params, objective, fit, positives, folder, tags, check
            )
            trained.seconds[objective.name] = trained.seconds.get(objective.name, 0) + fit.seconds

        batch.collect(tower_done)
    trained.versions = {name: v for name, v in trained.versions.items() if v}
    return trained


def _routed_before(
    config: Config, frame: pd.DataFrame, folder: Path, use_routing: bool
) -> pd.DataFrame:
    """routed_<objective> as the folder's fit routed `frame`: every positive without routing,
    else by the network's out-of-fold outputs it wrote."""
    pairs = [(objective.name, objective.label) for objective in config.objectives]
    labels = objective_labels(frame, pairs)
    if not use_routing:
        return labels.astype(bool).add_prefix("routed_")
    outputs = pd.read_parquet(folder / OUTPUTS_FILE)
    if len(outputs) != len(frame):
        raise ValueError(
            f"{folder / OUTPUTS_FILE}: {len(outputs):,} rows for {len(frame):,} training events; "
            "the folder was fitted on other events (fit it again)"
        )
    return route(labels, outputs, pairs, config.coordinating.threshold)


def _skipped(config: Config, objective: Objective) -> bool:
    if objective.name in config.training.two_tower_skip:
        log.info("%s: two-tower not trained (training.two_tower_skip)", objective.name)
        return True
    return False


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
    checks: hooks.TrainingChecks | None,
    pool: parallel.JobPool,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    settings = params = config.coordinating
    dataset = config.dataset
    objectives = [(objective.name, objective.label) for objective in config.objectives]
    inputs = CoordinatingInputs(
        user_categorical=tuple(dataset.user_categorical),
        user_numeric=tuple(dataset.user_numeric),
        context_numeric=CONTEXT,
        n_columns=n_columns,
    )
    with (
        tracking.step_run("coordinating-network", dataclasses.asdict(params)),
        tempfile.TemporaryDirectory(prefix="related-videos-stage2-") as scratch,
    ):
        labels = objective_labels(frame, objectives)
        shared: pd.DataFrame | Path = frame
        if pool.workers > 1:  # one pickle read by every worker, not one copy per job
            shared = Path(scratch) / "frame.pickle"
            frame.to_pickle(shared)
        jobs = [
            (fit_jobs.coordinating_fold, (shared, objectives, inputs, params, fold))
            for fold in range(params.folds)
        ]
        network_path = folder / "coordinating-network"
        # The network fit on every row is what gets registered; nothing downstream reads it
        # (routing uses the folds' predictions), so an unregistered fit skips it.
        if tags is not None:
            final = (shared, objectives, inputs, params, network_path)
            jobs.append((fit_jobs.coordinating_final, final))
        results = pool.run("coordinating network", jobs)
        per_fold = results[: params.folds]
        predictions = combine_folds(frame, objectives, params, per_fold)
        routed = route(labels, predictions, objectives, settings.threshold)
        report = routing_report(labels, routed, objectives)
        auc = oof_auc(labels, predictions)
        metrics = {f"oof_auc_{name}": float(v) for name, v in auc.items() if np.isfinite(v)}
        for name, row in report.iterrows():
            metrics[f"routed_share_{name}"] = float(row.routed_share)
            metrics[f"positives_{name}"] = int(row.positives)
        if checks is not None and "p_click" in predictions:
            p_click = predictions["p_click"].to_numpy()
            metrics.update(checks.routing(frame, p_click, settings.threshold))
        mlflow.log_metrics(metrics)
        if tags is not None:
            _log_curve(results[-1])
        outputs = pd.concat(
            [frame[["user_id", "video_id", "ts"]], predictions.drop(columns="fold")], axis=1
        )
        outputs.to_parquet(folder / OUTPUTS_FILE, index=False)
        mlflow.log_text(report.to_string(), "routing_report.txt")
        if tags is None:
            return routed, report, ""
        version = registry.register(
            "coordinating-network",
            "coordinating",
            {"network": network_path},
            {**tags, "objectives": ",".join(name for name, _ in objectives)},
            requirements=(*registry.REQUIREMENTS, "keras", "tensorflow-cpu"),
        )
        return routed, report, str(version.version)


def _train_als(
    config: Config,
    objective: Objective,
    positives: pd.DataFrame,
    holdout: np.ndarray,
    codes: IdCodes,
    folder: Path,
    tags: dict[str, str] | None,
    spark,
    check,
) -> str:
    """One objective's ALS as its nested run: fit on the positives not held out (`codes`: their
    ids), AUC on the held-out ones, vectors written (and registered with `tags`)."""
    engine = config.training.als_engine
    params = objective.als
    name = f"als-{objective.name}"
    values = matrix_values(positives, objective.value).to_numpy(dtype=np.float64)
    with tracking.step_run(name, {**dataclasses.asdict(params), "engine": engine}):
        train = ~holdout
        coded = coded_interaction_matrix(
            codes.users[train], codes.videos[train], values[train], codes.user_ids, codes.video_ids
        )
        with threadpool_limits(1, "blas"):  # implicit's advice; the env var may come too late
            model = fit_als_matrix(
                coded.matrix,
                coded.user_ids,
                coded.video_ids,
                params,
                engine,
                seed=config.seed,
                spark=spark,
                calculate_training_loss=engine == "implicit",
            )
        auc = fit_jobs.holdout_auc(
            lambda: auc_at_positions(
                model,
                coded.user_rows[codes.users[holdout]],
                coded.video_columns[codes.videos[holdout]],
                np.random.default_rng(config.seed),
            )
        )
        mlflow.log_metrics(
            {
                "auc_holdout_pooled": auc,
                "fit_seconds": model.fit_seconds,
                "positives": int(train.sum()),
                "holdout_positives": int(holdout.sum()),
                "videos_with_vector": len(model.item_vectors),
                **(
                    {"training_loss": model.training_loss}
                    if model.training_loss is not None
                    else {}
                ),
                **check(model.item_vectors),
            }
        )
        return _register_vectors(name, model.item_vectors, folder, tags, objective, engine)


def _two_tower_job(
    objective: Objective,
    positives: pd.DataFrame,
    holdout: np.ndarray,
    catalog: fit_jobs.TowerInputs,
    folder: Path,
    params: TwoTowerParams,
) -> tuple:
    """`fit_jobs.two_tower` and its arguments: the model is saved in `folder` under its name."""
    name = f"two-tower-{objective.name}"
    return fit_jobs.two_tower, (
        name,
        positives,
        holdout,
        catalog,
        params,
        folder / name,
        params.seed,
    )


def _log_two_tower(
    params: TwoTowerParams,
    objective: Objective,
    fit: fit_jobs.TwoTowerFit,
    positives: int,
    folder: Path,
    tags: dict[str, str] | None,
    check,
) -> str:
    """A finished two-tower fit as its nested run: settings, AUC, curve, hook checks; the item
    vectors written and registered."""
    name = f"two-tower-{objective.name}"
    with tracking.step_run(name, dataclasses.asdict(params)):
        mlflow.log_metrics(
            {
                "auc_holdout_pooled": fit.auc,
                "epochs_run": fit.epochs_run,
                "positives": positives,
                "fit_seconds": fit.seconds,
            }
        )
        _log_curve(fit.history)
        mlflow.log_metrics(check(fit.vectors))
        return _register_vectors(name, fit.vectors, folder, tags, objective, "keras")


def _no_checks(vectors) -> dict[str, float]:
    """The item-vector check of a data set without training checks: no metrics."""
    return {}


def _register_vectors(name, vectors, folder: Path, tags, objective: Objective, engine: str) -> str:
    """Write the item vectors; register them when there are version tags ("" otherwise)."""
    path = folder / f"{name}.item_vectors.parquet"
    # No dictionary for the floats: Arrow would try one on every value, for nothing (4x the time)
    pq.write_table(vectors.to_table(), path, use_dictionary=["video_id"])
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


def _log_curve(history) -> None:
    """Per-epoch training figures as MLflow metric steps (the training curve)."""
    frame = pd.DataFrame(history)
    for step, row in enumerate(frame.to_dict("records")):
        mlflow.log_metrics({f"curve_{k}": float(v) for k, v in row.items()}, step=step)


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
