"""The experiment step on a toy world: generated and validated in its own workspace, three simple
methods' lists written by hand; the report, the MLflow run, the A/A row and the clear errors."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.baselines import popularity_lists
from pipelines.config import ConfigError, load_config
from pipelines.data.io import DataFileError, read_table
from pipelines.experiment import AA_ARM, run_experiment
from pipelines.generate import run_generate
from pipelines.validate import run_validate
from pipelines.workspace import evaluation_dir, raw_dir, validated_dir

METHODS = ["popularity", "series", "unrelated"]
LIST_LENGTH = 10


def _lists_from(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(pairs, columns=["video_id", "related_video_id"])
    rank = frame.groupby("video_id").cumcount() + 1
    return frame.assign(rank=rank, content_similarity=np.nan, score=1.0 / rank)


def truth_lists(truth: pd.DataFrame, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """`series`: a video's series mates (its genre for a standalone one); `unrelated`: random
    videos of other genres."""
    ids, series, genre = (truth[c].to_numpy() for c in ("video_id", "series_id", "genre"))
    mates, others = [], []
    for i, video in enumerate(ids):
        same = (series == series[i]) if series[i] is not None else (genre == genre[i])
        same[i] = False
        mates += [(video, ids[j]) for j in np.flatnonzero(same)[:LIST_LENGTH]]
        other = rng.choice(np.flatnonzero(genre != genre[i]), LIST_LENGTH, replace=False)
        others += [(video, ids[j]) for j in other]
    return {"series": _lists_from(mates), "unrelated": _lists_from(others)}


@pytest.fixture(scope="module")
def toy_config(tmp_path_factory, mlflow_store):
    root = tmp_path_factory.mktemp("experiment")
    overrides = [
        f"paths.workspace={root}",
        "synthetic.size=toy",
        "experiment.baseline=popularity",
        "experiment.replicates=5",
        "experiment.aa_replicates=5",
    ]
    config = load_config(overrides=overrides)
    run_generate(config, progress=False)
    run_validate(config)
    events = read_table(validated_dir(config) / "events.parquet")
    videos = read_table(validated_dir(config) / "videos.parquet")
    truth = read_table(raw_dir(config) / "truth" / "videos.parquet")
    lists = {
        "popularity": popularity_lists(events, videos["video_id"].to_numpy(), LIST_LENGTH),
        **truth_lists(truth, np.random.default_rng(0)),
    }
    folder = evaluation_dir(config)
    (folder / "lists").mkdir(parents=True)
    for method, frame in lists.items():
        frame.to_parquet(folder / "lists" / f"{method}.parquet", index=False)
    (folder / "evaluation.json").write_text(
        json.dumps({"methods": METHODS, "baseline": "popularity"})
    )
    return config


@pytest.fixture(scope="module")
def experiment(toy_config):
    return run_experiment(toy_config, progress=False)


def test_the_report_has_every_method_and_the_aa_row(experiment):
    assert list(experiment.table.index) == [*METHODS, AA_ARM]
    for name in ("experiment.md", "experiment.html", "experiment.png", "summary.csv"):
        assert (experiment.folder / name).stat().st_size > 0, name
    markdown = (experiment.folder / "experiment.md").read_text()
    assert "| popularity (baseline) |" in markdown and "| baseline (A/A) |" in markdown
    assert "7-day retention" in markdown and "negative feedback" in markdown
    assert experiment.table.loc["series", "ctr"].startswith("+")  # a change in percent
    assert "%" not in experiment.table.loc["popularity", "ctr"]  # the baseline: absolute values
    counts = experiment.replicates.groupby("arm").size()
    assert counts.to_dict() == {"popularity": 5, "series": 5, "unrelated": 5, AA_ARM: 5}


def test_arms_share_seeds_and_the_aa_arm_has_its_own(experiment):
    seeds = experiment.replicates.groupby("arm")["seed"].apply(list)
    assert seeds["series"] == seeds["popularity"] == seeds["unrelated"]
    assert not set(seeds[AA_ARM]) & set(seeds["popularity"])


def test_series_lists_beat_unrelated_ones(experiment):
    change = experiment.summary.set_index(["arm", "metric"])
    for metric in ("ctr", "play_time_per_impression", "satisfaction_rate"):
        assert change.loc[("series", metric), "change_low"] > 0, metric
        assert change.loc[("unrelated", metric), "change_high"] < 0, metric


def test_the_aa_row_stays_within_chance(experiment):
    aa = experiment.summary[experiment.summary["arm"] == AA_ARM]
    assert len(aa) == 5
    width = aa["change_high"] - aa["change_low"]
    # Contains 0, or misses it by little: a 95% interval may miss now and then.
    assert ((aa["change_low"] <= 0.1 * width) & (aa["change_high"] >= -0.1 * width)).all()


def test_mlflow_has_the_metrics_and_the_report(experiment, toy_config):
    runs = mlflow.search_runs(filter_string="tags.step = 'experiment'", output_format="list")
    run = max(runs, key=lambda r: r.info.start_time)
    metrics = run.data.metrics
    assert {"series/ctr_change_pct", "aa/retention_change_low", "popularity/ctr"} <= set(metrics)
    assert run.data.params["baseline"] == "popularity"
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "experiment")
    }
    assert {"experiment/experiment.md", "experiment/experiment.png"} <= artifacts


def test_same_configuration_same_results(experiment, toy_config):
    again = run_experiment(toy_config, progress=False)
    columns = ["arm", "replicate", "ctr", "satisfaction_rate", "retention"]
    pd.testing.assert_frame_equal(again.replicates[columns], experiment.replicates[columns])


def test_only_the_synthetic_world_can_be_simulated(toy_config):
    config = load_config(
        overrides=[f"paths.workspace={toy_config.paths.workspace}", "data.dataset=kuairand"]
    )
    with pytest.raises(ConfigError, match="only the synthetic world"):
        run_experiment(config, progress=False)


def test_data_of_another_seed_is_refused(toy_config):
    config = load_config(
        overrides=[f"paths.workspace={toy_config.paths.workspace}", "synthetic.size=toy", "seed=7"]
    )
    with pytest.raises(DataFileError, match="not generated with this configuration"):
        run_experiment(config, progress=False)


def test_a_baseline_outside_the_evaluation_is_refused(toy_config):
    overrides = [f"paths.workspace={toy_config.paths.workspace}", "synthetic.size=toy"]
    config = load_config(overrides=overrides)  # the default baseline als-click was not evaluated
    with pytest.raises(ConfigError, match="experiment.baseline"):
        run_experiment(config, progress=False)
