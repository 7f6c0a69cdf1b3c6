"""The evaluate step (offline, the paper's Table 1): a temporal split, every method trained on the
same training days, each method's related lists scored on the test days' events, and a report.

Nothing here is registered or published: the models live in the evaluation folder, which is
swapped in whole when the step ends, with the lists the simulated experiment replays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from models.baselines import (
    content_lists,
    content_popularity_lists,
    gated_cooccurrence_lists,
    gated_popularity_lists,
    item_cf_lists,
    popularity_lists,
    ungated_pairs,
    vector_lists,
)
from models.candidates import pair_similarity, shared_values
from models.diagnostics import score_diagnostics
from models.fusion import Fusion, lifts, paired_gain
from models.metrics import (
    LOWER_IS_BETTER,
    OBJECTIVE_LABELS,
    change_vs_baseline,
    evaluate_lists,
    paired_comparison,
    test_pairs,
)
from models.params import TwoTowerParams
from pipelines import evaluation_report, parallel, registry, stage3, tracking, windows, workspace
from pipelines.config import Config, ConfigError
from pipelines.data.io import DataFileError, publish_folder, read_table, write_json
from pipelines.fingerprint import TRAINING_KEYS, code_digest, lookup
from pipelines.stage1 import find_candidates, popularity, profiles_from_store
from pipelines.stage2 import TrainingSet, fit_stage2
from pipelines.stage3 import load_vectors

log = logging.getLogger(__name__)

MULTI_TASK = "multi-task"
STAGE2_KEY = ".stage2.json"  # in a stage-2 models folder: what it was fitted from


@dataclass
class Evaluation:
    table: pd.DataFrame  # one row per method, one column per metric
    change: pd.DataFrame  # percent change against the baseline
    split: pd.Timestamp
    folder: Path
    report: Path
    run_id: str
    baseline: str


def split_time(events: pd.DataFrame, test_days: int, timezone: str) -> pd.Timestamp:
    """The start of the test period: midnight (in `timezone`) of the first of the last
    `test_days` calendar days of the log, as a UTC timestamp."""
    if test_days < 1:
        raise ConfigError(f"evaluation.test_days: {test_days} must be at least 1")
    last = events["ts"].max().tz_convert(timezone)
    start = last.normalize() - pd.Timedelta(days=test_days - 1)
    split = start.tz_convert("UTC")
    if not (events["ts"] < split).any():
        raise ConfigError(
            f"evaluation.test_days: {test_days} leaves no training days (the log runs "
            f"{events['ts'].min()} to {events['ts'].max()})"
        )
    return split


def run_evaluate(config: Config, methods: Sequence[str] | None = None) -> Evaluation:
    """Train the chosen methods (all when None) on the days before the split and score their
    lists on the days after; write the lists, the summary and the report."""
    events = workspace.read_events(config)
    test_days = windows.evaluation_test_days(events, config)  # sized to the data if short
    split = split_time(events, test_days, config.dataset.timezone)
    train = events[events["ts"] < split].reset_index(drop=True)
    test = _with_duration(config, events[events["ts"] >= split].reset_index(drop=True))
    n = config.merge.top_n
    params = {
        "dataset": config.data.dataset,
        "split": split,
        "test_days": test_days,
        "training_events": len(train),
        "test_events": len(test),
        "top_n": n,
        "at": config.evaluation.at,
        "cold_max_events": config.evaluation.cold_max_events,
        "baseline": config.evaluation.baseline,
    }
    log.info(
        "evaluation: %s training events before %s, %s test events",
        f"{len(train):,}",
        split,
        f"{len(test):,}",
    )
    with (
        tracking.step_run("evaluate", params) as run,
        publish_folder(workspace.evaluation_dir(config)) as folder,
        publish_folder(workspace.evaluation_report_dir(config)) as report_folder,
    ):
        started = time.perf_counter()
        profiles = profiles_from_store(workspace.feature_repo_dir(config))
        diagnostics: dict[str, dict[str, float]] = {}
        fusions: dict[str, Fusion] = {}
        decisions: dict[str, dict] = {}
        lists = method_lists(
            config, train, folder, profiles, methods, diagnostics, fusions, decisions
        )
        matrix, video_ids, _ = profiles
        counts = train["video_id"].value_counts()
        cold = {v for v in video_ids if counts.get(v, 0) <= config.evaluation.cold_max_events}
        table = _score(config, lists, test, matrix, video_ids, cold)
        comparisons = _compare(config, lists, test)
        change = change_vs_baseline(table, config.evaluation.baseline, LOWER_IS_BETTER)
        (folder / "lists").mkdir()
        for name, frame in lists.items():
            frame.to_parquet(folder / "lists" / f"{name}.parquet", index=False)
        table.to_csv(folder / "metrics.csv", index_label="method")
        summary = {
            "methods": list(table.index),
            "baseline": config.evaluation.baseline,
            "split": split.isoformat(),
            "top_n": n,
            "at": config.evaluation.at,
            "training_events": len(train),
            "test_events": len(test),
            "cold_videos": len(cold),
            # How many test sources each objective's recall averages over: small counts, wide
            # uncertainty.
            "test_sources": {
                objective: int(test_pairs(test, label)["source_video_id"].nunique())
                for objective, label in OBJECTIVE_LABELS.items()
            },
            "run_id": run.info.run_id,
            # How the merged methods' scores spread: tied lists, distinct scores, reasons.
            "diagnostics": {
                method: {k: _json_number(v) for k, v in figures.items()}
                for method, figures in diagnostics.items()
            },
            "fusion": fusions[MULTI_TASK].to_dict() if MULTI_TASK in fusions else None,
            # Whether the full method routes by the coordinating network (training.routing).
            "routing": decisions.get("routing"),
            # The full method minus each bar and ablation, with a paired-bootstrap 95% interval.
            "comparisons": {
                method: {
                    metric: {k: _json_number(v) for k, v in figures.items()}
                    for metric, figures in per.items()
                }
                for method, per in comparisons.items()
            },
            # What promotion compares: the full method's figures, for this configuration and data.
            "config_digest": registry.config_digest(config.raw),
            "data_digest": registry.file_digest(workspace.validated_manifest(config)),
            "metrics": {
                method: {k: _json_number(v) for k, v in row.items()}
                for method, row in table.to_dict("index").items()
            },
        }
        (folder / workspace.EVALUATION_SUMMARY).write_text(json.dumps(summary, indent=2))
        report = evaluation_report.write_report(
            table, change, summary, config.candidates.threshold, report_folder
        )
        _log_methods(table, change, diagnostics)
        routing = decisions.get("routing")
        if routing is not None:
            mlflow.log_metrics(
                {f"routing_{k}": float(v) for k, v in routing.items() if k != "mode"}
            )
        mlflow.log_metrics({"seconds": time.perf_counter() - started, "cold_videos": len(cold)})
        mlflow.log_artifacts(str(report_folder), artifact_path="report")
        mlflow.log_artifact(str(folder / "metrics.csv"))
    return Evaluation(
        table,
        change,
        split,
        workspace.evaluation_dir(config),
        workspace.evaluation_report_dir(config) / report.name,
        run.info.run_id,
        config.evaluation.baseline,
    )


MERGED = ("no-cn", "no-two-tower", "no-gate", "no-learned-weights")
# What a gated method must beat: simple orders of the same candidates.
GATED_BARS = ("gated-popularity", "content-popularity", "gated-cooccurrence")


def all_methods(config: Config) -> list[str]:
    """Every method the evaluation knows, in the report's order."""
    return [
        "popularity",
        "content",
        "item-cf",
        *GATED_BARS,
        *(f"als-{name}" for name in config.objective_names()),
        "two-tower-click",
        MULTI_TASK,
        *MERGED,
    ]


def chosen_methods(config: Config, methods: Sequence[str] | None) -> list[str]:
    """`methods` (all when None) in the report's order, the baseline always among them."""
    known = all_methods(config)
    wanted = set(known if methods is None else methods) | {config.evaluation.baseline}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ConfigError(f"evaluation: unknown methods {unknown}; known: {known}")
    return [method for method in known if method in wanted]


def method_lists(
    config: Config,
    train: pd.DataFrame,
    folder: Path,
    profiles: tuple,
    methods: Sequence[str] | None = None,
    diagnostics: dict[str, dict[str, float]] | None = None,
    fusions: dict[str, Fusion] | None = None,
    decisions: dict | None = None,
) -> dict[str, pd.DataFrame]:
    """Each chosen method's related lists (all when None), trained on `train` only, in the
    report's order. Only the models the chosen methods need are trained. `profiles`: the
    (matrix, video ids, vocabulary) of `profiles_from_store`. The merged methods' score
    diagnostics and the full method's fusion are put into `diagnostics` and `fusions`, and the
    routing decision (`_routing_decision`) into `decisions`."""
    diagnostics = {} if diagnostics is None else diagnostics
    fusions = {} if fusions is None else fusions
    decisions = {} if decisions is None else decisions
    chosen = chosen_methods(config, methods)
    n = config.merge.top_n
    multi_dir, single_dir = folder / "models-multi-task", folder / "models-single-objective"
    needs_multi = bool({MULTI_TASK, *MERGED} & set(chosen))
    mode = config.training.routing
    # The fit without the network gets in full the towers its own methods need (no-cn: every
    # one); the full method's others are judged after the routing decision, a probe first.
    every_tower = "no-cn" in chosen
    single_towers = None if every_tower else {"click"} if "two-tower-click" in chosen else set()
    needs_single = (
        "no-cn" in chosen
        or (needs_multi and mode != "always")  # judged against, or used
        or any(m.startswith("als-") or m == "two-tower-click" for m in chosen)
    )
    matrix, video_ids, vocabulary = profiles
    # Stage 1 again, its ties at the cap broken by the training days' popularity only.
    pairs = find_candidates(
        matrix, video_ids, vocabulary, config, False, popularity(train, video_ids)
    )
    previous = _previous_folder(config, folder)
    # What both fits are made from, hashed once (the events and features are the large part).
    inputs = _stage2_inputs(config, train) if needs_multi or needs_single else {}
    training = TrainingSet(config, train)  # read from Feast once, if any fit needs it
    fitted: dict[tuple[str, bool], Fusion] = {}

    def fusion_of(stage2: Path, two_tower: bool = True) -> Fusion:
        """The fusion of a stage-2 folder's models (without their two-tower sides: `two_tower`
        False), fitted once."""
        vectors = stage3.model_vectors(config, stage2, two_tower)
        two_tower = any(tower is not None for _, tower in vectors.values())
        key = (stage2.name, two_tower)
        if key not in fitted:
            fitted[key] = stage3.fit(config, stage2, pairs, train, vectors=vectors)[0]
        return fitted[key]

    # The network's fit has no towers at first: the routing is judged on ALS, priors and
    # evidence, and the towers (minutes each at a million events) only on the fit it keeps.
    if needs_multi and mode != "never":
        log.info("evaluation: the multi-task method (coordinating network and routing)")
        _fit_stage2_once(
            config, train, multi_dir, previous, inputs, two_tower_for=set(), training=training
        )
    if needs_single:
        log.info("evaluation: the single-objective models (every positive, no routing)")
        _fit_stage2_once(
            config, train, single_dir, previous, inputs, False, single_towers, training
        )
    base = multi_dir
    if needs_multi:
        multi_fit = (lambda: fusion_of(multi_dir, False)) if mode != "never" else None
        decision = _routing_decision(config, multi_fit, lambda: fusion_of(single_dir, False))
        decisions["routing"] = decision
        kept = bool(decision["kept"])
        base = multi_dir if kept else single_dir
        names = config.objective_names()
        held: set[str] = set()  # the towers the kept fit holds in full already
        if not kept:  # no-cn's (every one) or two-tower-click's
            held = set(names) if single_towers is None else set(single_towers)
        towers = [name for name in names if name not in held]

        def forget(folder: Path) -> None:
            fitted.pop((folder.name, True), None)

        fusions[MULTI_TASK] = _judge_towers(
            config, training, pairs, base, kept, towers, fusion_of, forget
        )
    del training  # the features of every training event, no longer needed
    multi = stage3.model_vectors(config, base) if needs_multi else None

    def merged(name: str) -> pd.DataFrame:
        if name == "no-cn":
            vectors = stage3.model_vectors(config, single_dir)
            priors = stage3.read_priors(single_dir)
            return stage3.table(config, pairs, vectors, priors, fusion_of(single_dir), train)
        priors = stage3.read_priors(base)
        if name == "no-two-tower":
            has_towers = any(tower is not None for _, tower in multi.values())
            if not has_towers and MULTI_TASK in built:  # the full method's lists, made once
                return built[MULTI_TASK]
            vectors = stage3.model_vectors(config, base, two_tower=False)
            return stage3.table(config, pairs, vectors, priors, fusion_of(base, False), train)
        fusion = fusions[MULTI_TASK]
        if name == "no-learned-weights":
            equal = {objective: 1.0 for objective in config.objective_names()}
            return stage3.table(config, pairs, multi, priors, fusion, train, weights=equal)
        if name == "no-gate":
            return _no_gate_lists(config, multi, priors, fusion, train, profiles)
        return stage3.table(config, pairs, multi, priors, fusion, train)

    builders: dict[str, Callable[[], pd.DataFrame | None]] = {
        "popularity": lambda: popularity_lists(train, video_ids, n),
        "content": lambda: content_lists(pairs, n),
        "item-cf": lambda: item_cf_lists(train, n, config.evaluation.item_cf_min_cooccurrence),
        "gated-popularity": lambda: gated_popularity_lists(pairs, train, n),
        "content-popularity": lambda: content_popularity_lists(pairs, train, n),
        "gated-cooccurrence": lambda: gated_cooccurrence_lists(pairs, train, n),
    }
    for objective in config.objectives:
        name = f"als-{objective.name}"
        builders[name] = _vector_method(single_dir, name, n, objective.sign)
    builders["two-tower-click"] = _vector_method(single_dir, "two-tower-click", n, 1)
    for name in (MULTI_TASK, *MERGED):
        builders[name] = lambda name=name: merged(name)

    lists, built = {}, {}
    progress = parallel.Progress("evaluation: lists", len(chosen), 1, time.perf_counter())
    for name in chosen:
        frame = built[name] = builders[name]()
        if frame is None:
            progress.done(f"{name}: no lists")
            continue
        if name in (MULTI_TASK, *MERGED):
            diagnostics[name] = score_diagnostics(frame, stage3.signal_names(config))
        lists[name] = frame[["video_id", "rank", "related_video_id", "score"]]
        progress.done(f"{name}: {frame['video_id'].nunique():,} lists")
    baseline = config.evaluation.baseline
    if baseline not in lists:
        raise DataFileError(
            f"{single_dir}: the baseline {baseline} has no model (too few clicks before the "
            "split); lower evaluation.test_days or bring more data"
        )
    return lists


def _judge_towers(
    config: Config,
    training: TrainingSet,
    pairs: pd.DataFrame,
    folder: Path,
    use_routing: bool,
    towers: Sequence[str],
    fusion_of: Callable[[Path], Fusion],
    forget: Callable[[Path], None],
) -> Fusion:
    """The full method's fusion, after adding to its stage-2 `folder` the two-tower models of
    `towers` that earn their place: each is first fitted as a probe (`evaluation.
    two_tower_probe`: a few epochs on a sample of its positives) and judged by the fusion:
    its validation AUC must beat ALS's by `weights.two_tower_min_gain` and it must lift the
    validation lists at all (an undertrained model's lift is not asked to be beyond noise).
    Only the probes that pass are fitted in full and judged again, as any tower. A rejected
    probe's figures stay in the fusion's, marked `probe`, and its vectors leave the folder:
    production does not train it (`train.evaluated_two_tower_drops`). `forget(folder)`:
    `fusion_of`'s cached fusion of the folder with towers is stale."""
    train = training.events
    towers = [name for name in towers if name not in config.training.two_tower_skip]
    probe = config.evaluation.two_tower_probe
    state = _stage2_key_of(folder) or ""
    rejected: dict[str, dict] = {}
    if towers and probe.epochs:
        params = dataclasses.replace(
            config.two_tower, max_epochs=probe.epochs, max_positives=probe.max_positives
        )
        log.info(
            "evaluation: two-tower probes for %s (%d epochs on at most %s positives each); "
            "only a probe that earns its place in the fusion is fitted in full",
            ", ".join(towers),
            probe.epochs,
            f"{probe.max_positives:,}",
        )
        state, outcome = _add_towers(config, training, folder, towers, params, use_routing, state)
        if outcome is None:
            figures = stage3.two_tower_figures(config, folder, pairs, train, list_z=0.0)
            promising = [name for name in towers if figures.get(name, {}).get("kept")]
            outcome = {
                "promising": promising,
                "rejected": {
                    name: {**figures[name], "probe": True}
                    for name in towers
                    if name in figures and name not in promising
                },
            }
            for name in set(towers) - set(promising):
                _drop_tower(folder, name)
            _record_step(folder, state, outcome)
            forget(folder)
        towers, rejected = outcome["promising"], outcome["rejected"]
        log.info("evaluation: two-tower probes passed for %s", ", ".join(towers) or "no objective")
    if towers:
        state, outcome = _add_towers(
            config, training, folder, towers, config.two_tower, use_routing, state
        )
        if outcome is None:
            _record_step(folder, state, {})
            forget(folder)
    fusion = fusion_of(folder)
    if rejected:
        fusion = dataclasses.replace(fusion, two_tower={**rejected, **fusion.two_tower})
    return fusion


def _add_towers(
    config: Config,
    training: TrainingSet,
    folder: Path,
    towers: Sequence[str],
    params: TwoTowerParams,
    use_routing: bool,
    state: str,
) -> tuple[str, dict | None]:
    """The two-tower models of `towers` with `params` fitted into the stage-2 `folder` (its
    routing and ALS stay), unless the folder, reused from the previous evaluation, went through
    this same step after the same `state` already. Returns the new state (the step's key) and
    the outcome recorded for it then (None: fitted now)."""
    key = registry.digest(
        {"after": state, "towers": sorted(towers), "params": dataclasses.asdict(params)}
    )
    steps = json.loads((folder / STAGE2_KEY).read_text()).get("steps", {})
    if key in steps:
        log.info("evaluation: two-tower models of %s reused (same fit, same step)", folder.name)
        return key, steps[key]
    for name in towers:  # a reused folder's files are links to the previous evaluation's
        _drop_tower(folder, name)
    fit_stage2(
        config,
        training.events,
        folder,
        use_routing=use_routing,
        two_tower_for=towers,
        als=False,
        tower_params=params,
        training=training,
    )
    return key, None


def _drop_tower(folder: Path, name: str) -> None:
    """An objective's two-tower model and vectors out of a stage-2 folder (links only
    removed: the previous evaluation's files stay as they were)."""
    (folder / f"two-tower-{name}.item_vectors.parquet").unlink(missing_ok=True)
    shutil.rmtree(folder / f"two-tower-{name}", ignore_errors=True)


def _record_step(folder: Path, key: str, outcome: dict) -> None:
    """A tower step's outcome, kept with the folder's key for a later evaluation's reuse
    (written anew, never through a link to the previous evaluation's file)."""
    path = folder / STAGE2_KEY
    record = json.loads(path.read_text())
    record.setdefault("steps", {})[key] = outcome
    write_json(record, path.with_name(path.name + ".new")).replace(path)


def _routing_decision(
    config: Config, multi: Callable[[], Fusion] | None, no_cn: Callable[[], Fusion]
) -> dict[str, object]:
    """Whether the full method keeps the coordinating network's routing (`training.routing`):
    with "auto", only where the validation lists of its models (the fusion's chosen weighting,
    recall and NDCG of `weights.select_on`, held-out training events) beat those of the models
    that learn from every positive by more than `weights.selection_z` standard errors, paired
    by source. Both fusions leave the two-tower sides out: routing is judged on ALS, the
    priors and the evidence, and the towers after, on the fit chosen (a tower costs minutes
    at a million events; it is not fitted twice to judge the network). `multi` and `no_cn`
    give those fusions; None: the network was not fitted."""
    mode = config.training.routing
    if mode == "never" or multi is None:
        return {"mode": mode, "kept": False}
    if not _routing_judged(config):
        return {"mode": mode, "kept": True}
    gain, error = paired_gain(multi().judged, no_cn().judged)
    kept = lifts(gain, error, config.weights.selection_z)
    say = log.info if kept else log.warning
    say(
        "coordinating network: its routing %s the validation lists (%+.4f, standard error "
        "%.4f, against every positive teaching each objective; ALS, priors and evidence)%s",
        "lifts" if kept else "does not lift",
        gain,
        error,
        "" if kept else ": left out of the full method; the production fit skips it",
    )
    return {"mode": mode, "kept": kept, "gain": gain, "error": error}


def _routing_judged(config: Config) -> bool:
    """Whether the validation lists decide the routing (`auto`); `always` keeps it, and so does
    the retention weighting, which reads the network's outputs."""
    return config.training.routing == "auto" and config.merge.weights != "retention"


def _previous_folder(config: Config, folder: Path) -> Path | None:
    """The evaluation folder published before this run (None on a first run)."""
    published = workspace.evaluation_dir(config)
    if not published.exists() or published.resolve() == folder.resolve():
        return None
    return published.resolve()


def _fit_stage2_once(
    config: Config,
    train: pd.DataFrame,
    folder: Path,
    previous: Path | None,
    inputs: dict,
    use_routing: bool = True,
    two_tower_for: Collection[str] | None = None,
    training: TrainingSet | None = None,
) -> None:
    """Stage 2 fitted on `train` into `folder`, or the previous evaluation's fit linked there
    when it was made from the same training events, features, settings and code: a change of
    the merge, weights or evaluation settings alone then refits no network."""
    key = _stage2_key(config, train, use_routing, two_tower_for, inputs)
    old = previous / folder.name if previous is not None else None
    if old is not None and _stage2_key_of(old) == key:
        shutil.copytree(old, folder, copy_function=_link_or_copy)
        log.info(
            "evaluation: %s reused from the previous evaluation (same training events, "
            "features, stage-2 settings and code)",
            folder.name,
        )
        mlflow.set_tag(f"reused.{folder.name}", str(old))
        return
    folder.mkdir()
    fit_stage2(
        config,
        train,
        folder,
        use_routing=use_routing,
        two_tower_for=two_tower_for,
        training=training,
    )
    write_json({"key": key}, folder / STAGE2_KEY)


def _stage2_key(
    config: Config,
    train: pd.DataFrame,
    use_routing: bool,
    two_tower_for: Collection[str] | None,
    inputs: dict | None = None,
) -> str:
    """What a stage-2 fit depends on: `inputs` (`_stage2_inputs`, computed when not given),
    whether it routes, and which objectives get a two-tower model."""
    shared = inputs or _stage2_inputs(config, train)
    return registry.digest(
        {
            **shared,
            "routing": use_routing,
            "two_tower_for": None if two_tower_for is None else sorted(two_tower_for),
        }
    )


def _stage2_inputs(config: Config, train: pd.DataFrame) -> dict:
    """What every stage-2 fit on `train` is made from: its settings, the training events, the
    published features and the code it runs."""
    sources = workspace.feature_repo_dir(config) / "data" / "sources"
    features = {
        path.name: registry.file_digest(path)
        for path in sorted(sources.glob("*"))
        if path.is_file() and not path.name.startswith(".")
    }
    rows = pd.util.hash_pandas_object(train, index=False).to_numpy()
    keys = (*TRAINING_KEYS, "data", f"datasets.{config.data.dataset}")
    return {
        "config": {key: lookup(config.raw, key) for key in keys},
        "columns": list(train.columns),
        "events": hashlib.sha256(rows.tobytes()).hexdigest(),
        "features": features,
        "code": code_digest("pipelines.stage2"),
    }


def _stage2_key_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / STAGE2_KEY).read_text())["key"]
    except (OSError, ValueError, KeyError):
        return None


def _link_or_copy(source: str, target: str) -> None:
    """A hard link (the files are never written again), a copy where links are refused."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _vector_method(folder: Path, name: str, n: int, sign: int):
    def build() -> pd.DataFrame | None:
        vectors = load_vectors(folder, name)
        if vectors is None:
            log.warning("evaluation: %s has no model (too few positives): left out", name)
            return None
        return vector_lists(vectors, n, sign=sign)

    return build


def _no_gate_lists(
    config: Config,
    multi,
    priors: pd.DataFrame,
    fusion: Fusion,
    train: pd.DataFrame,
    profiles: tuple,
) -> pd.DataFrame | None:
    """The "no relevance gate" lists: the full method ranking, instead of the candidates, every
    trained model's nearest neighbours of each source. Built a block of sources at a time: all
    sources at once held every pair with its reasons in memory (gigabytes at 20,000 videos)."""
    models = [vectors for pair in multi.values() for vectors in pair if vectors is not None]
    sources = np.unique(np.concatenate([m.video_ids for m in models])) if models else []
    size = config.evaluation.ungated_block_size
    tables = []
    for start in range(0, len(sources), size):
        pairs = _ungated(config, models, profiles, sources[start : start + size])
        if len(pairs):
            tables.append(stage3.table(config, pairs, multi, priors, fusion, train))
    return pd.concat(tables, ignore_index=True) if tables else None


def _ungated(config: Config, models: list, profiles: tuple, sources: np.ndarray) -> pd.DataFrame:
    """The ungated candidates of some sources, with the content similarity and shared values
    stage 1 would have given them."""
    matrix, video_ids, vocabulary = profiles
    pairs = ungated_pairs(models, config.evaluation.ungated_neighbours, sources)
    index = pd.Index(video_ids)
    source = index.get_indexer(pairs["source_video_id"])
    candidate = index.get_indexer(pairs["candidate_video_id"])
    known = (source >= 0) & (candidate >= 0)
    pairs, source, candidate = pairs[known], source[known], candidate[known]
    return pairs.assign(
        content_similarity=pair_similarity(matrix, source, candidate),
        shared=shared_values(matrix, source, candidate, vocabulary.tokens()),
    ).reset_index(drop=True)


def _score(
    config: Config,
    lists: dict[str, pd.DataFrame],
    test: pd.DataFrame,
    matrix,
    video_ids: np.ndarray,
    cold: set,
) -> pd.DataFrame:
    """Every metric of every method; relevance from the profiles, for every method alike."""
    index = pd.Index(video_ids)
    rows = {}
    for name, frame in lists.items():
        source = index.get_indexer(frame["video_id"].astype(str))
        target = index.get_indexer(frame["related_video_id"].astype(str))
        similarity = np.zeros(len(frame))
        known = (source >= 0) & (target >= 0)
        similarity[known] = pair_similarity(matrix, source[known], target[known])
        scored = frame.assign(content_similarity=similarity)
        rows[name] = evaluate_lists(
            scored,
            test,
            config.evaluation.at,
            config.candidates.threshold,
            len(video_ids),
            cold_videos=cold,
        )
    return pd.DataFrame.from_dict(rows, orient="index")


def _compare(
    config: Config, lists: dict[str, pd.DataFrame], test: pd.DataFrame
) -> dict[str, dict[str, dict[str, float]]]:
    """The full method minus each bar, ablation and the baseline it must beat, per metric, with
    a paired-bootstrap 95% interval over the test sources (models.metrics.paired_comparison)."""
    if MULTI_TASK not in lists:
        return {}
    rivals = ["content", *GATED_BARS, config.evaluation.baseline, *MERGED]
    return {
        rival: paired_comparison(
            lists[MULTI_TASK],
            lists[rival],
            test,
            config.evaluation.at,
            config.evaluation.bootstrap_resamples,
            config.seed,
        )
        for rival in dict.fromkeys(rivals)
        if rival in lists
    }


def _with_duration(config: Config, events: pd.DataFrame) -> pd.DataFrame:
    """Events with their video's duration_s (the play-time label needs it)."""
    folder = workspace.validated_manifest(config).parent
    videos = read_table(folder / "videos.parquet")[["video_id", "duration_s"]]
    return events.merge(videos, on="video_id", how="left")


def _log_methods(
    table: pd.DataFrame, change: pd.DataFrame, diagnostics: dict[str, dict[str, float]]
) -> None:
    """One nested run per method (compare them side by side in the MLflow UI)."""
    for name in table.index:
        with tracking.step_run(f"method: {name}", tags={"method": name}):
            values = {k: float(v) for k, v in table.loc[name].items() if np.isfinite(v)}
            changes = {
                f"change_pct_{k}": float(v) for k, v in change.loc[name].items() if np.isfinite(v)
            }
            scores = {
                f"diagnostic_{k}": float(v)
                for k, v in diagnostics.get(name, {}).items()
                if np.isfinite(v)
            }
            mlflow.log_metrics({**values, **changes, **scores})


def _json_number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
