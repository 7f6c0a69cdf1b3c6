"""The evaluate step on the toy pipeline: the temporal split, every method's lists and metrics,
the report and its MLflow run, nothing registered; and no test-period event reaching any method's
training data (every training entry point is watched while the step runs)."""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest

from models import fusion as fusion_module
from models.fusion import WEIGHTINGS, Fusion
from pipelines import evaluate as evaluate_step
from pipelines import feature_store, fit_jobs, stage2, stage3, workspace
from pipelines.config import ConfigError, load_config
from pipelines.evaluate import GATED_BARS, run_evaluate, split_time
from pipelines.stage1 import profiles_from_store
from pipelines.workspace import read_evaluation
from tests.conftest import SMALL_MODELS

BASELINE = "als-click"

METHODS = [
    "popularity",
    "content",
    "item-cf",
    "gated-popularity",
    "content-popularity",
    "gated-cooccurrence",
    "als-click",
    "als-play_time",
    "als-like",
    "als-share",
    "als-dislike",
    "two-tower-click",
    "multi-task",
    "no-cn",
    "no-two-tower",
    "no-gate",
    "no-learned-weights",
]


def _events(*stamps: str) -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.to_datetime(list(stamps), utc=True)})


def test_split_starts_at_midnight_of_the_first_test_day_in_the_datasets_timezone():
    events = _events("2026-01-01 10:00", "2026-01-05 15:30")
    assert split_time(events, 2, "UTC") == pd.Timestamp("2026-01-04", tz="UTC")
    # 15:30 UTC is 23:30 in Shanghai on the 5th: the 4th and 5th there start at 16:00 UTC on the 3rd
    assert split_time(events, 2, "Asia/Shanghai") == pd.Timestamp("2026-01-03 16:00", tz="UTC")


def test_a_split_without_training_days_is_a_configuration_error():
    with pytest.raises(ConfigError, match="evaluation.test_days: 5 leaves no training days"):
        split_time(_events("2026-01-01 10:00", "2026-01-05 15:30"), 5, "UTC")
    with pytest.raises(ConfigError, match="at least 1"):
        split_time(_events("2026-01-01 10:00"), 0, "UTC")


class Watch:
    """Records what each training entry point was given, then calls the real function."""

    def __init__(self):
        self.seen: dict[str, list[pd.DataFrame]] = {}

    def wrap(self, name: str, function, pick):
        def watched(*args, **kwargs):
            self.seen.setdefault(name, []).append(pick(*args, **kwargs).copy())
            return function(*args, **kwargs)

        return watched


def toy_config(workspace, *extra: str):
    return load_config(
        overrides=[
            f"paths.workspace={workspace}",
            "synthetic.size=toy",
            "coordinating.threshold=0.3",
            "training.min_positives=3",
            *SMALL_MODELS,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def evaluated(toy_pipeline):
    # One process: the watched functions are patched in this one.
    config = toy_config(toy_pipeline.config.paths.workspace, "training.workers=1")
    client = mlflow.MlflowClient()
    registered_before = len(client.search_model_versions())
    watch = Watch()
    with pytest.MonkeyPatch.context() as patch:
        for module, name, pick in (
            (feature_store, "historical_features", lambda repo, events, service: events),
            (fit_jobs, "coordinating_fold", lambda frame, *a, **k: fit_jobs.frame_of(frame)),
            (fit_jobs, "coordinating_final", lambda frame, *a, **k: fit_jobs.frame_of(frame)),
            (stage2, "fit_als_matrix", _matrix_pairs),
            (fit_jobs, "two_tower", lambda name, positives, *a, **k: positives),
            (evaluate_step, "popularity_lists", lambda events, *a, **k: events),
            (evaluate_step, "item_cf_lists", lambda events, *a, **k: events),
            (evaluate_step, "popularity", lambda events, *a, **k: events),
            (evaluate_step, "gated_popularity_lists", lambda pairs, events, *a, **k: events),
            (evaluate_step, "content_popularity_lists", lambda pairs, events, *a, **k: events),
            (evaluate_step, "gated_cooccurrence_lists", lambda pairs, events, *a, **k: events),
            (stage3, "retention_weights", lambda config, events, outputs: events),
            # The weighting's choice and the calibrations read the held-out training events.
            (stage3, "fit_fusion", lambda pairs, vectors, priors, heldout, *a, **k: heldout),
            (stage3, "pair_cooccurrence", lambda sources, candidates, events, *a, **k: events),
            # The dislike guard's risk: the candidates' counts, which carry no time.
            (fusion_module, "risk_column", lambda pairs, priors, *a, **k: priors),
        ):
            patch.setattr(module, name, watch.wrap(name, getattr(module, name), pick))
        # Every model is fitted here, none linked from an earlier evaluation of the workspace.
        patch.setattr(evaluate_step, "_previous_folder", lambda config, folder: None)
        evaluation = run_evaluate(config)
    registered_after = len(client.search_model_versions())
    return evaluation, watch, config, registered_before, registered_after


def _matrix_pairs(matrix, user_ids, video_ids, *args, **kwargs) -> pd.DataFrame:
    """The (user, video) pairs an ALS fit is given: the non-zero cells of its matrix."""
    cells = matrix.tocoo()
    return pd.DataFrame({"user_id": user_ids[cells.row], "video_id": video_ids[cells.col]})


def test_no_test_period_event_reaches_any_methods_training_data(evaluated):
    evaluation, watch, config, *_ = evaluated
    split = evaluation.split
    timed = (
        "historical_features",
        "coordinating_fold",
        "two_tower",
        "popularity_lists",
        "item_cf_lists",
        "popularity",
        "gated_popularity_lists",
        "content_popularity_lists",
        "gated_cooccurrence_lists",
        "retention_weights",
        "fit_fusion",
        "pair_cooccurrence",
    )
    # The network fit on every row is only registered: an evaluation does not fit it.
    assert not watch.seen.get("coordinating_final")
    for name in timed:
        assert watch.seen.get(name), f"{name} was never called"
        for frame in watch.seen[name]:
            assert frame["ts"].max() < split, f"{name} saw an event at or after {split}"
    # ALS gets (user, video, value) without time: none of its pairs may exist only in the test.
    events = workspace.read_events(config)
    pairs = events.assign(test=events["ts"] >= split).groupby(["user_id", "video_id"])["test"]
    test_only = pairs.all()
    test_only = set(test_only[test_only].index)
    assert test_only, "the toy test period has pairs of its own: the check can fail"
    assert len(watch.seen["fit_als_matrix"]) >= 2 * len(config.objectives) - 2  # both model sets
    for interactions in watch.seen["fit_als_matrix"]:
        seen = set(zip(interactions["user_id"], interactions["video_id"], strict=True))
        assert not seen & test_only
    # The risk the guard weighs counts a video's training events and dislikes only.
    training = events[events["ts"] < split]
    counts = training.groupby("video_id").agg(events=("ts", "size"), dislikes=("disliked", "sum"))
    assert watch.seen.get("risk_column"), "risk_column was never called"
    for priors in watch.seen["risk_column"]:
        assert len(priors) and priors["positives_dislike"].sum() > 0
        known = counts.reindex(priors.index.astype(str)).fillna(0)
        assert (priors["events"].to_numpy() <= known["events"].to_numpy()).all()
        assert (priors["positives_dislike"].to_numpy() <= known["dislikes"].to_numpy()).all()


def test_every_method_is_scored_against_the_baseline(evaluated):
    evaluation = evaluated[0]
    assert list(evaluation.table.index) == METHODS
    assert (evaluation.change.loc[BASELINE].fillna(0) == 0).all()
    for column in ("recall_click", "ndcg_play_time", "dislike_rate", "relevance_share"):
        assert column in evaluation.table
    assert "recall_click_cold" in evaluation.table
    # The gated bars list content-relevant videos first: all alike, below the gate only where a
    # source has too few candidates (its list is filled, the same for all). The merged methods
    # rank a short list's fills by score among its gated candidates (candidates.fill_ranks), so
    # a fill may come first: never more relevant than that, still mostly relevant.
    relevant = evaluation.table.loc["content", "relevance_share"]
    assert relevant > 0.8
    for method in GATED_BARS:
        assert evaluation.table.loc[method, "relevance_share"] == relevant, method
    for method in ("multi-task", "no-cn", "no-two-tower", "no-learned-weights"):
        assert 0.8 < evaluation.table.loc[method, "relevance_share"] <= relevant, method
    assert evaluation.table.loc["popularity", "relevance_share"] < 0.5
    # Recall and shares are shares.
    recall = evaluation.table[[c for c in evaluation.table if c.startswith("recall_")]]
    assert ((recall >= 0) & (recall <= 1) | recall.isna()).all().all()


def test_lists_summary_and_report_are_written_and_logged(evaluated):
    evaluation, _, config, before, after = evaluated
    summary = read_evaluation(config)
    assert summary["methods"] == METHODS and summary["baseline"] == BASELINE
    assert pd.Timestamp(summary["split"]) == evaluation.split
    for method in METHODS:
        lists = pd.read_parquet(evaluation.folder / "lists" / f"{method}.parquet")
        assert {"video_id", "rank", "related_video_id", "score"} <= set(lists.columns)
        assert (lists["video_id"] != lists["related_video_id"]).all()
        assert lists.groupby("video_id").size().max() <= config.merge.top_n
    folder = evaluation.report.parent
    for name in ("report.md", "report.html", "change_by_objective.png"):
        assert (folder / name).stat().st_size > 0
    markdown = (folder / "report.md").read_text()
    assert "| multi-task |" in markdown and "%" in markdown
    assert "## Score diagnostics" in markdown and "Weighting of the full method" in markdown
    assert set(summary["diagnostics"]) >= {"multi-task", "no-two-tower", "no-learned-weights"}
    assert summary["fusion"]["weighting"] in WEIGHTINGS
    # The network's routing was judged on validation; where it lifted nothing, the full
    # method is the method without it.
    routing = summary["routing"]
    assert routing["mode"] == "auto" and isinstance(routing["kept"], bool)
    assert routing["kept"] == (routing["gain"] > 1.645 * routing["error"] and routing["gain"] > 0)
    lists = evaluation.folder / "lists"
    full, no_cn = (pd.read_parquet(lists / f"{m}.parquet") for m in ("multi-task", "no-cn"))
    if not routing["kept"]:
        pd.testing.assert_frame_equal(full, no_cn)
    assert "- coordinating network: " in markdown
    # The full method against each bar and ablation, with intervals, in the summary and report.
    compared = summary["comparisons"]
    assert set(compared) >= {"gated-cooccurrence", BASELINE, "no-gate"}
    click = compared["gated-cooccurrence"]["recall_click"]
    assert click["low"] <= click["difference"] <= click["high"]
    assert "## The full method against each bar and ablation" in markdown
    assert "| gated-cooccurrence | " in markdown.split("## The full method against")[1]
    run = mlflow.get_run(evaluation.run_id)
    assert run.data.params["baseline"] == BASELINE
    assert run.data.metrics["routing_kept"] == float(routing["kept"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(evaluation.run_id, "report")}
    assert "report/report.html" in artifacts
    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{evaluation.run_id}' and tags.method = 'no-gate'"
    )
    assert len(children) == 1
    assert before == after, "the evaluation registered a model"
    json.loads((evaluation.folder / "evaluation.json").read_text())


def test_no_gate_lists_built_in_blocks_are_the_lists_built_at_once(evaluated):
    """The no-gate ablation is built a block of sources at a time (memory); any block size
    gives the same lists as one block of every source."""
    evaluation, _, config, *_ = evaluated
    root = config.paths.workspace
    folder = evaluation.folder / "models-multi-task"
    multi = stage3.model_vectors(config, folder)
    priors = stage3.read_priors(folder)
    fusion = Fusion.from_dict(read_evaluation(config)["fusion"])
    profiles = profiles_from_store(workspace.feature_repo_dir(config))
    events = workspace.read_events(config)
    train = events[events["ts"] < evaluation.split]
    at_once = evaluate_step._no_gate_lists(
        toy_config(root, "evaluation.ungated_block_size=1000000"),
        multi,
        priors,
        fusion,
        train,
        profiles,
    )
    in_blocks = evaluate_step._no_gate_lists(
        toy_config(root, "evaluation.ungated_block_size=7"), multi, priors, fusion, train, profiles
    )
    assert at_once["video_id"].nunique() > 7  # more than one block
    pd.testing.assert_frame_equal(in_blocks, at_once)


def test_a_merge_change_reuses_the_stage2_fits_and_a_training_change_refits(toy_pipeline, tmp_path):
    root = tmp_path / "workspace"
    shutil.copytree(toy_pipeline.config.paths.workspace, root)
    shutil.rmtree(root / "data" / "synthetic" / "evaluation", ignore_errors=True)
    base = ("training.workers=1",)
    fitted = []
    real = evaluate_step.fit_stage2

    def counted(config, events, folder, *args, **kwargs):
        fitted.append(folder.name)
        return real(config, events, folder, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate_step, "fit_stage2", counted)
        # The baseline alone: its stage 2 (ALS, every positive) takes the same path as the
        # multi-task one's, in seconds.
        first = run_evaluate(toy_config(root, *base), [BASELINE])
        assert fitted == ["models-single-objective"]
        vectors = first.folder / "models-single-objective" / "als-click.item_vectors.parquet"
        before = pd.read_parquet(vectors)
        merge_only = toy_config(root, *base, "merge.manual_weights.share=0.5")
        second = run_evaluate(merge_only, [BASELINE])
    assert len(fitted) == 1, "a merge setting refitted stage 2"
    again = second.folder / "models-single-objective" / "als-click.item_vectors.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(again), before)
    assert (second.folder / "lists" / f"{BASELINE}.parquet").exists()
    run = mlflow.get_run(second.run_id)
    assert "reused.models-single-objective" in run.data.tags

    # What the fits depend on: stage 2's settings, the training events and routing.
    config = toy_config(root, *base)
    events = workspace.read_events(config)
    train = events[events["ts"] < second.split].reset_index(drop=True)
    key = evaluate_step._stage2_key(config, train, True, None)
    assert key == evaluate_step._stage2_key(merge_only, train, True, None)
    epochs = toy_config(root, *base, "two_tower.max_epochs=2")
    assert key != evaluate_step._stage2_key(epochs, train, True, None)
    assert key != evaluate_step._stage2_key(config, train.iloc[1:], True, None)
    assert key != evaluate_step._stage2_key(config, train, False, None)


def test_the_towers_are_judged_by_probes_on_the_fit_the_routing_decision_keeps(
    toy_pipeline, tmp_path
):
    """The network's fit has no towers while its routing is judged; the full method's towers
    are then added to the fit the decision keeps (its ALS and routing untouched), each as a
    probe first (evaluation.two_tower_probe); only a probe that passes is fitted in full. A
    rejected probe leaves the folder and the summary says it was a probe; no-cn's towers are
    not fitted again; a second evaluation of the same fit reuses every step."""
    root = tmp_path / "workspace"
    shutil.copytree(toy_pipeline.config.paths.workspace, root)
    shutil.rmtree(root / "data" / "synthetic" / "evaluation", ignore_errors=True)
    fitted = []
    real_fit, real_figures = evaluate_step.fit_stage2, stage3.two_tower_figures

    def counted(config, events, folder, *args, **kwargs):
        towers, params = kwargs.get("two_tower_for"), kwargs.get("tower_params")
        epochs = None if params is None else params.max_epochs
        step = (folder.name, None if towers is None else sorted(towers), kwargs.get("als", True))
        fitted.append((*step, epochs))
        return real_fit(config, events, folder, *args, **kwargs)

    reads = []
    real_read = feature_store.historical_features

    def read(repo, entity_rows, service, *args, **kwargs):
        reads.append(service)
        return real_read(repo, entity_rows, service, *args, **kwargs)

    def evaluated(methods, kept, passing=(), reuse=False):
        decision = {"mode": "auto", "kept": kept, "gain": 0.0, "error": 0.0}

        def judged(*args, **kwargs):  # the probes in `passing` pass, no other
            figures = real_figures(*args, **kwargs)
            for name, per in figures.items():
                per["kept"] = name in passing
            return figures

        fitted.clear()
        reads.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(evaluate_step, "fit_stage2", counted)
            patch.setattr(feature_store, "historical_features", read)
            patch.setattr(evaluate_step, "_routing_decision", lambda *args: decision)
            patch.setattr(stage3, "two_tower_figures", judged)
            if not reuse:
                patch.setattr(evaluate_step, "_previous_folder", lambda config, folder: None)
            evaluation = run_evaluate(config, methods)
        assert read_evaluation(config)["routing"] == decision
        return evaluation

    config = toy_config(root, "training.workers=1")
    every = sorted(config.objective_names())
    probe, full = config.evaluation.two_tower_probe.epochs, config.two_tower.max_epochs
    evaluation = evaluated(["multi-task", "no-cn", BASELINE], kept=False)
    assert fitted == [
        ("models-multi-task", [], True, None),  # the routing judged on ALS: no tower
        ("models-single-objective", None, True, None),  # no-cn: every tower, in full
    ]
    lists = evaluation.folder / "lists"
    full_lists, no_cn = (pd.read_parquet(lists / f"{m}.parquet") for m in ("multi-task", "no-cn"))
    pd.testing.assert_frame_equal(full_lists, no_cn)

    evaluation = evaluated(["multi-task", BASELINE], kept=False, passing={"click"})
    assert fitted == [
        ("models-multi-task", [], True, None),
        ("models-single-objective", [], True, None),
        ("models-single-objective", every, False, probe),  # left out: probes, no network
        ("models-single-objective", ["click"], False, full),  # the probe that passed
    ]
    # Four fits on the same training days, each feature service read from Feast once.
    assert sorted(reads) == ["coordinating_network", "two_tower"]
    single = evaluation.folder / "models-single-objective"
    assert (single / "two-tower-click.item_vectors.parquet").exists()
    assert not (single / "two-tower-play_time.item_vectors.parquet").exists()
    assert not (single / "two-tower-play_time").exists()
    towers = read_evaluation(config)["fusion"]["two_tower"]
    assert "probe" not in towers["click"]  # judged again, fitted in full
    assert towers["play_time"]["probe"] and not towers["play_time"]["kept"]

    evaluated(["multi-task", BASELINE], kept=False, passing={"click"}, reuse=True)
    assert fitted == []  # the same fit, the same steps: reused from the evaluation before
    assert reads == []

    evaluation = evaluated(["multi-task", BASELINE], kept=True)
    assert fitted == [
        ("models-multi-task", [], True, None),
        ("models-single-objective", [], True, None),
        ("models-multi-task", every, False, probe),  # kept: probes, with the network's routing
    ]
    multi = evaluation.folder / "models-multi-task"
    assert not list(multi.glob("two-tower-*"))  # no probe passed: none left, none fitted


def test_a_tower_step_never_writes_through_a_link_to_the_previous_evaluation(tmp_path):
    """A reused stage-2 folder is hard links to the previous evaluation's files: recording a
    tower step and dropping a tower change this folder only."""
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "two-tower-click").mkdir(parents=True)
    (old / evaluate_step.STAGE2_KEY).write_text('{"key": "k"}')
    (old / "two-tower-click.item_vectors.parquet").write_text("vectors")
    (old / "two-tower-click" / "model").write_text("model")
    shutil.copytree(old, new, copy_function=evaluate_step._link_or_copy)
    evaluate_step._record_step(new, "step", {"promising": []})
    evaluate_step._drop_tower(new, "click")
    assert json.loads((old / evaluate_step.STAGE2_KEY).read_text()) == {"key": "k"}
    assert json.loads((new / evaluate_step.STAGE2_KEY).read_text())["steps"] == {
        "step": {"promising": []}
    }
    assert (old / "two-tower-click.item_vectors.parquet").read_text() == "vectors"
    assert (old / "two-tower-click" / "model").read_text() == "model"
    assert not list(new.glob("two-tower-*"))


def _judged(values: list[float]) -> pd.Series:
    index = pd.MultiIndex.from_product([["recall_click"], [f"v{i}" for i in range(len(values))]])
    return pd.Series(values, index=index)


def _fusion(values: list[float]) -> Fusion:
    from models.weights import equal_weights

    return Fusion({}, equal_weights(["click"]), "equal", judged=_judged(values))


def test_the_network_stays_only_where_it_lifts_the_validation_lists(tmp_path):
    """training.routing auto keeps the coordinating network only where the full method's
    validation lists beat those of the models learning from every positive by selection_z
    standard errors (paired by source); always and never decide without judging, and the
    retention weighting, which reads the network's outputs, keeps it."""
    decide = evaluate_step._routing_decision
    rng = [0.2, 0.5, 0.1, 0.4, 0.3, 0.6, 0.2, 0.5]
    without = _fusion(rng)
    lifted = _fusion([v + 0.1 + 0.01 * (i % 2) for i, v in enumerate(rng)])
    noise = _fusion([v + (0.01 if i % 2 else -0.01) for i, v in enumerate(rng)])
    config = toy_config(tmp_path)
    kept = decide(config, lambda: lifted, lambda: without)
    assert kept["kept"] and kept["gain"] > 0.1 and kept["mode"] == "auto"
    assert not decide(config, lambda: noise, lambda: without)["kept"]
    assert not decide(config, lambda: without, lambda: without)["kept"]  # a tie: the cheaper

    def unused() -> Fusion:
        raise AssertionError("judged without need")

    assert decide(toy_config(tmp_path, "training.routing=always"), unused, unused)["kept"]
    assert not decide(toy_config(tmp_path, "training.routing=never"), None, unused)["kept"]
    assert decide(toy_config(tmp_path, "merge.weights=retention"), unused, unused)["kept"]
