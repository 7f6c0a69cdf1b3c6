"""The input gate's profile checks, the column mapping, the sized test window and the
interaction-only mode: what each finds on a toy world bent the way a real log is.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.columns import apply_mapping, likely_source, missing_column_hint
from pipelines.config import ConfigError, load_config
from pipelines.gate_report import Finding, GateReport
from pipelines.interactions import with_clicks
from pipelines.profile_checks import ProfileSettings, profile_findings
from pipelines.windows import evaluation_too_small, sized_test_window


def findings(tables, config):
    return profile_findings(tables, ProfileSettings.from_config(config))


def test_the_toy_world_has_no_profile_finding(toy_tables, config):
    errors, warnings, checks = findings(toy_tables, config)
    assert (errors, warnings) == ([], [])
    assert checks == 4 + 1 + 2  # four flags, one single-valued attribute, window and retention


def test_every_event_a_click_is_an_error_pointing_at_the_interaction_only_mode(toy_tables, config):
    toy_tables["events"]["clicked"] = 1
    errors, _, _ = findings(toy_tables, config)
    (error,) = errors
    assert (error.table, error.column) == ("events", "clicked")
    assert "no negatives" in error.observed
    assert "datasets.synthetic.interaction_only: true" in error.hint
    interactions = load_config(overrides=["datasets.synthetic.interaction_only=true"])
    errors, warnings, _ = findings(toy_tables, interactions)
    assert errors == [] and not any(w.column == "clicked" for w in warnings)


def test_a_flag_never_set_is_a_warning_naming_its_objective(toy_tables, config):
    toy_tables["events"]["shared"] = 0
    errors, warnings, _ = findings(toy_tables, config)
    assert errors == []
    (warning,) = warnings
    assert warning.column == "shared" and "objective share has no positives" in warning.observed
    report = GateReport("input", True, [], warnings, 10)
    assert "(within tolerance)" not in report.summary()
    toy_tables["events"]["clicked"] = 0
    errors, _, _ = findings(toy_tables, config)
    assert [e.column for e in errors] == ["clicked"]


def test_a_single_valued_attribute_holding_lists_is_named(toy_tables, config):
    toy_tables["videos"]["video_type"] = "movie|clip"
    _, warnings, _ = findings(toy_tables, config)
    (warning,) = warnings
    assert (warning.table, warning.column) == ("videos", "video_type")
    assert warning.unexpected_count == len(toy_tables["videos"])
    assert warning.examples == ["movie|clip"]
    assert "datasets.synthetic.video_attributes.video_type: multi" in warning.hint


def test_a_tiny_test_window_is_widened_or_said_too_small(toy_tables, config):
    events = toy_tables["events"]
    last_days = events["ts"] >= events["ts"].max().normalize() - pd.Timedelta(days=2)
    latest = events[last_days].sort_values("ts").tail(36)
    thin = pd.concat([events[~last_days], latest], ignore_index=True)
    toy_tables["events"] = thin
    _, warnings, _ = findings(toy_tables, config)
    (warning,) = [w for w in warnings if w.column == "ts"]
    assert "hold 36 of" in warning.observed and "tests on the last" in warning.observed
    window = sized_test_window(thin["ts"], config.evaluation, "UTC")
    assert window.widened and window.enough and window.events >= 500
    assert window.events <= config.evaluation.max_test_share * len(thin)
    strict = config.evaluation.model_copy(update={"min_test_events": 10**6})
    window = sized_test_window(thin["ts"], strict, "UTC")
    assert not window.enough and window.days < 12  # a training day always stays


def test_few_retained_users_warn_and_refuse_a_retention_weighting(toy_tables, config):
    events = toy_tables["events"]
    last = events["ts"].max()
    # Only ten users are active in the last half of the log.
    early = events["ts"] < last - pd.Timedelta(days=6)
    keep = early | events["user_id"].isin(events["user_id"].drop_duplicates().head(10))
    toy_tables["events"] = events[keep].reset_index(drop=True)
    _, warnings, _ = findings(toy_tables, config)
    assert any("retention" in w.observed for w in warnings)
    retention = load_config(overrides=["merge.weights=retention"])
    errors, _, _ = findings(toy_tables, retention)
    assert any("merge.weights: transitions" in e.hint for e in errors)


def test_promotion_judges_only_a_big_enough_evaluation(config):
    settings = config.evaluation
    assert (
        evaluation_too_small({"test_events": 866, "test_sources": {"click": 74}}, settings) is None
    )
    reason = evaluation_too_small({"test_events": 36, "test_sources": {"click": 9}}, settings)
    assert "too small to judge" in reason and "36 test events" in reason
    assert "min_test_events" in reason
    assert evaluation_too_small({"metrics": {}}, settings) is None  # a summary without its size


def test_the_mapping_renames_the_files_columns():
    events = pd.DataFrame({"userId": ["u"], "movieId": ["v"], "timestamp": [1], "ts": [2]})
    mapped = apply_mapping(
        {"events": events},
        {"events": {"user_id": "userId", "video_id": "movieId", "ts": "timestamp"}},
    )["events"]
    assert list(mapped.columns) == ["user_id", "video_id", "ts"]
    assert mapped["ts"].tolist() == [1]  # the mapped column wins over one named like the contract


def test_a_missing_column_gets_the_files_columns_and_the_mapping_syntax():
    def missing(column: str) -> Finding:
        return Finding("events", column, "column is present", "expect_column_to_exist", None, 3)

    present = {"events": ["userId", "movieId", "rating", "timestamp"]}
    found = missing_column_hint(missing("ts"), present, "movies", {})
    assert found.observed == "missing; the file has userId, movieId, rating, timestamp"
    assert "datasets.movies.columns: {events: {ts: timestamp}}" in found.hint
    found = missing_column_hint(missing("user_id"), present, "movies", {})
    assert "{events: {user_id: userId}}" in found.hint
    found = missing_column_hint(missing("ts"), present, "movies", {"events": {"ts": "time"}})
    assert "maps ts to 'time', which the file does not have" in found.hint
    assert likely_source("video_id", ["movieId", "title"]) == "movieId"
    assert likely_source("liked", ["genres"]) is None


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("datasets.synthetic.columns={clicks: {user_id: u}}", "columns.clicks"),
        ("datasets.synthetic.columns={events: {userid: u}}", "columns.events.userid"),
        ("datasets.synthetic.columns={events: {user_id: x, video_id: x}}", "columns.events"),
    ],
)
def test_a_wrong_mapping_is_a_configuration_error_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(overrides=[override])


def test_the_interaction_only_mode_fills_clicks_and_turns_routing_off():
    config = load_config(overrides=["datasets.synthetic.interaction_only=true"])
    assert config.coordinating.threshold == 0.0
    events = pd.DataFrame({"user_id": ["u"], "video_id": ["v"]})
    assert with_clicks(events, config)["clicked"].tolist() == [1]
    assert load_config().coordinating.threshold == 0.6
    assert "clicked" not in with_clicks(events, load_config())


def test_promotion_refuses_a_first_table_on_a_tiny_evaluation(tmp_path, mlflow_store):
    """run_promote on a registry of its own: a challenger whose evaluation held 36 test events
    is rejected though there is no champion, with the reason; with both minimums at 0 it is
    approved."""
    import json

    import mlflow

    from pipelines import tracking, workspace
    from pipelines.promote import run_promote
    from pipelines.registry import CHALLENGER, MODEL_NAME

    store = [f"paths.workspace={tmp_path}", f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"]
    config = load_config(overrides=store)
    tracking.configure_for(config)
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL_NAME)
    tags = {"output_gate": "passed", "config_digest": "c", "data_digest": "d"}
    version = client.create_model_version(MODEL_NAME, str(tmp_path), tags=tags).version
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, str(version))
    summary = workspace.evaluation_dir(config) / workspace.EVALUATION_SUMMARY
    summary.parent.mkdir(parents=True)
    recalls = {metric: 0.3 for metric in config.promotion.metrics}
    summary.write_text(
        json.dumps(
            {
                "config_digest": "c",
                "data_digest": "d",
                "test_events": 36,
                "test_sources": {"click": 9},
                "metrics": {"multi-task": recalls},
            }
        )
    )
    refused = run_promote(config)
    assert not refused.promote and refused.champion is None
    assert refused.reasons[0].startswith("its evaluation is too small to judge: 36 test events")
    anyway = load_config(
        overrides=[*store, "evaluation.min_test_events=0", "evaluation.min_test_sources=0"]
    )
    assert run_promote(anyway).promote
