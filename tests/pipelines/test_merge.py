"""The merge step on the toy pipeline: the related table passes the output gate, is written and
registered as `related-videos`; a fresh process loads exactly its lists; a failing gate stops the
step with the expectation named and registers nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.fusion import RISK, WEIGHTINGS
from pipelines import merge as merge_step
from pipelines.gate_report import GateFailed
from pipelines.merge import run_merge
from pipelines.registry import MODEL_NAME
from pipelines.related_gate import run_related_gate
from pipelines.workspace import read_candidate_pairs, read_related_table


@pytest.fixture(scope="module")
def merged(toy_trained):
    return run_merge(toy_trained.config)


def test_the_table_passes_the_gate_and_is_registered_with_tags(merged, toy_trained):
    assert merged.report.success
    table = read_related_table(toy_trained.config)
    pd.testing.assert_frame_equal(table, merged.table.reset_index(drop=True))
    assert table.groupby("video_id").size().max() <= toy_trained.config.merge.top_n
    version = mlflow.MlflowClient().get_model_version(MODEL_NAME, merged.version)
    assert version.tags["output_gate"] == "passed"
    assert {"dataset", "data_digest", "config_digest", "table_digest"} <= set(version.tags)
    # The learnt weights sum to 1; the dislike guard's risk penalty stands beside them.
    learnt = {k: v for k, v in merged.weights.items() if k != RISK}
    assert abs(sum(learnt.values()) - 1) < 1e-9 and merged.weights.get(RISK, 0.0) >= 0


def test_the_merge_run_logs_its_fusion_and_score_diagnostics(merged, toy_trained):
    run = mlflow.search_runs(
        filter_string="tags.mlflow.runName = 'merge'", order_by=["start_time DESC"]
    ).iloc[0]
    metrics = {k.removeprefix("metrics."): v for k, v in run.items() if k.startswith("metrics.")}
    assert run["params.weighting"] in WEIGHTINGS
    for name in ("tied_list_share", "distinct_scores_per_list_mean", "rows_at_max_share"):
        assert f"diagnostic_{name}" in metrics
    assert metrics["diagnostic_tied_list_share"] <= toy_trained.config.merge.max_tied_list_share
    shares = {k: v for k, v in metrics.items() if k.startswith("diagnostic_reason_share_")}
    assert sum(v > 0 for k, v in shares.items() if not k.endswith("_none")) >= 2, shares
    assert any(k.startswith("validation_equal_recall_") for k in metrics)
    # The dislike guard's figures: the bar's risk and what the chosen penalty left.
    assert metrics["risk_guard_risk_after"] <= metrics["risk_guard_risk_before"]
    assert metrics["weight_risk"] == pytest.approx(merged.weights.get(RISK, 0.0))
    # Whether short lists' fills compete by score was decided on validation, and logged.
    assert metrics["fills_kept"] in (0.0, 1.0) and "fills_error" in metrics
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert "fusion.json" in artifacts
    # The scores are calibrated sums of probabilities, not saturated cosines: few at the top.
    table = merged.table
    assert (table["score"] >= table["score"].max() - 1e-9).mean() < 0.05


def test_a_fresh_process_loads_exactly_the_lists_of_the_table(merged, toy_trained):
    table = read_related_table(toy_trained.config)
    asked = list(table["video_id"].drop_duplicates()[:25]) + ["no-such-video"]
    script = (
        "import json, sys, mlflow\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL_NAME}/{merged.version}')\n"
        "answer = model.predict(json.loads(sys.argv[1]))\n"
        "print(answer.to_json(orient='records'))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(asked)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["video_id"] for row in answer] == asked
    for row in answer[:-1]:
        rows = table[table["video_id"] == row["video_id"]].sort_values("rank")
        assert row["related_video_ids"] == list(rows["related_video_id"])
        assert np.allclose(row["scores"], rows["score"])
        assert row["reasons"] == list(rows["reason"])
    assert answer[-1]["related_video_ids"] == []


def test_no_two_unrelated_blockbusters_are_listed_together(merged, toy_trained):
    truth = toy_trained.pipeline.world.truth["videos"].set_index("video_id")
    table = merged.table
    source, target = truth.loc[table["video_id"]], truth.loc[table["related_video_id"]]
    unrelated = source["genre"].to_numpy() != target["genre"].to_numpy()
    both = source["is_blockbuster"].to_numpy() & target["is_blockbuster"].to_numpy()
    assert not (both & unrelated).any()


def test_a_failing_output_gate_names_the_rule_and_registers_nothing(
    merged, toy_trained, monkeypatch
):
    real = merge_step.stage3.table

    def with_a_self_pair(*args, **kwargs):
        table = real(*args, **kwargs)
        table.loc[0, "related_video_id"] = table.loc[0, "video_id"]
        return table

    monkeypatch.setattr(merge_step.stage3, "table", with_a_self_pair)
    client = mlflow.MlflowClient()
    before = {v.version for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    published = read_related_table(toy_trained.config)
    with pytest.raises(GateFailed) as failure:
        run_merge(toy_trained.config)
    checks = {(f.column, f.check) for f in failure.value.report.errors}
    assert ("related_video_id", "no video is related to itself") in checks
    after = {v.version for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    assert after == before
    pd.testing.assert_frame_equal(read_related_table(toy_trained.config), published)


def _broken(table: pd.DataFrame, how: str) -> pd.DataFrame:
    table = table.copy()
    if how == "duplicate pair":
        table = pd.concat([table, table.iloc[[0]]], ignore_index=True)
    elif how == "rank gap":
        table.loc[0, "rank"] = 7
    elif how == "score not finite":
        table.loc[0, "score"] = np.inf
    elif how == "not a candidate":
        first = table.loc[0, "video_id"]
        others = table.loc[table["video_id"] != first, "related_video_id"]
        listed = set(table.loc[table["video_id"] == first, "related_video_id"]) | {first}
        table.loc[0, "related_video_id"] = next(v for v in others if v not in listed)
    elif how == "unknown id":
        table.loc[0, "related_video_id"] = "v-nowhere"
    return table


@pytest.mark.parametrize(
    ("how", "check"),
    [
        ("duplicate pair", "a pair appears once"),
        ("rank gap", "ranks run 1, 2, 3, ... per video"),
        ("score not finite", "score is a finite number"),
        ("not a candidate", "every pair is a candidate pair (stage 1)"),
        ("unknown id", "id is known in videos"),
    ],
)
def test_the_output_gate_catches(merged, toy_trained, how, check):
    pairs = read_candidate_pairs(toy_trained.config)
    video_ids = toy_trained.pipeline.world.videos["video_id"].to_numpy()
    report = run_related_gate(
        _broken(merged.table, how), pairs, video_ids, toy_trained.config.merge.top_n, None
    )
    assert not report.success
    assert check in {finding.check for finding in report.errors}
