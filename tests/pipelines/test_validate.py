"""The validate step and its input gate: good data passes and is written; each kind of corrupted
input is rejected with the expected expectation named, data docs saved and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines import workspace
from pipelines.config import load_config
from pipelines.data.io import read_table, write_table
from pipelines.gate_report import GateFailed, GateReport
from pipelines.validate import run_validate


def _config(
    tmp_path: Path,
    tables: dict[str, pd.DataFrame],
    suffix: str = ".parquet",
    dataset: str = "synthetic",
    extra: tuple[str, ...] = (),
):
    folder = tmp_path / "input"
    overrides = [f"paths.workspace={tmp_path / 'workspace'}", f"data.dataset={dataset}", *extra]
    for name, frame in tables.items():
        path = write_table(frame, folder / f"{name}{suffix}")
        overrides.append(f"datasets.{dataset}.files.{name}={path}")
    return load_config(overrides=overrides)


def _reject(
    tmp_path: Path,
    tables: dict[str, pd.DataFrame],
    suffix: str = ".parquet",
    extra: tuple[str, ...] = (),
) -> GateReport:
    """Run the step on corrupted tables: it must fail, leave data docs and write nothing."""
    config = _config(tmp_path, tables, suffix, extra=extra)
    with pytest.raises(GateFailed) as failure:
        run_validate(config)
    report = failure.value.report
    assert not report.success
    assert not workspace.validated_dir(config).exists(), "a failed gate wrote downstream"
    assert report.docs_index is not None and report.docs_index.exists()
    assert (report.docs_index.parent / "gate_result.json").exists()
    return report


def _named(report: GateReport, table: str, column: str | None, expectation: str) -> None:
    found = [(f.table, f.column, f.expectation) for f in report.errors]
    assert (table, column, expectation) in found, f"{table}.{column} {expectation} not in {found}"


@pytest.fixture(autouse=True)
def _tracking(mlflow_store):
    return mlflow_store


# --- what passes -------------------------------------------------------------------------------


def test_the_synthetic_world_passes_and_is_written_in_contract_types(tmp_path, toy_tables):
    config = _config(tmp_path, toy_tables)
    validated = run_validate(config)
    assert validated.report.success and not validated.report.warnings
    assert validated.rows == {name: len(frame) for name, frame in toy_tables.items()}
    events = read_table(validated.folder / "events.parquet")
    assert str(events["ts"].dtype) == "datetime64[ns, UTC]"
    assert (validated.folder / "manifest.json").exists()
    assert validated.report.docs_index.exists()


def test_csv_input_passes_like_parquet(tmp_path, toy_tables):
    validated = run_validate(_config(tmp_path, toy_tables, suffix=".csv"))
    videos = read_table(validated.folder / "videos.parquet")
    assert videos["tags"].map(len).sum() == toy_tables["videos"]["tags"].map(len).sum()


def test_events_without_source_video_id_get_it_derived(tmp_path, toy_tables):
    toy_tables["events"] = toy_tables["events"].drop(columns="source_video_id")
    validated = run_validate(_config(tmp_path, toy_tables))
    events = read_table(validated.folder / "events.parquet")
    assert events["source_video_id"].notna().any()


def test_duplicates_within_the_data_sets_tolerance_pass_as_a_warning(tmp_path, toy_tables):
    events = toy_tables["events"]
    toy_tables["events"] = pd.concat([events, events.head(10)], ignore_index=True)
    config = _config(
        tmp_path, toy_tables, extra=("datasets.synthetic.gate.duplicate_event_tolerance=0.05",)
    )
    validated = run_validate(config)
    assert [f.check for f in validated.report.warnings] == ["an event is not repeated"]
    assert validated.report.warnings[0].unexpected_count == 20  # both copies of each repeat


# --- what is rejected: one kind of corruption per test --------------------------------------------


def test_rejects_an_empty_events_table(tmp_path, toy_tables):
    toy_tables["events"] = toy_tables["events"].head(0)
    _named(_reject(tmp_path, toy_tables), "events", None, "expect_table_row_count_to_be_between")


def test_rejects_an_empty_videos_table(tmp_path, toy_tables):
    toy_tables["videos"] = toy_tables["videos"].head(0)
    report = _reject(tmp_path, toy_tables)
    _named(report, "videos", None, "expect_table_row_count_to_be_between")
    _named(report, "events", "video_id", "expect_column_values_to_be_null")  # all unknown now


def test_rejects_a_missing_column(tmp_path, toy_tables):
    toy_tables["videos"] = toy_tables["videos"].drop(columns="duration_s")
    report = _reject(tmp_path, toy_tables)
    _named(report, "videos", "duration_s", "expect_column_to_exist")
    # the missing column is named once, not once per expectation on it
    assert [f.column for f in report.errors if f.table == "videos"] == ["duration_s"]


def test_rejects_a_missing_configured_attribute(tmp_path, toy_tables):
    toy_tables["videos"] = toy_tables["videos"].drop(columns="staff")
    _named(_reject(tmp_path, toy_tables), "videos", "staff", "expect_column_to_exist")


def test_rejects_a_repeated_video_id(tmp_path, toy_tables):
    videos = toy_tables["videos"]
    videos.loc[1, "video_id"] = videos.loc[0, "video_id"]
    report = _reject(tmp_path, toy_tables)
    _named(report, "videos", "video_id", "expect_column_values_to_be_unique")
    finding = next(f for f in report.errors if f.column == "video_id")
    assert finding.unexpected_count == 2 and finding.examples[0] == videos.loc[0, "video_id"]


def test_rejects_a_repeated_user_id(tmp_path, toy_tables):
    users = toy_tables["users"]
    users.loc[3, "user_id"] = users.loc[2, "user_id"]
    _named(_reject(tmp_path, toy_tables), "users", "user_id", "expect_column_values_to_be_unique")


def test_rejects_a_null_key(tmp_path, toy_tables):
    toy_tables["events"].loc[5, "user_id"] = None
    _named(
        _reject(tmp_path, toy_tables), "events", "user_id", "expect_column_values_to_not_be_null"
    )


def test_rejects_a_duration_that_is_not_positive(tmp_path, toy_tables):
    toy_tables["videos"].loc[[0, 1], "duration_s"] = [0.0, -5.0]
    report = _reject(tmp_path, toy_tables)
    _named(report, "videos", "duration_s", "expect_column_values_to_be_between")
    finding = next(f for f in report.errors if f.column == "duration_s")
    assert finding.unexpected_count == 2 and sorted(finding.examples) == [-5.0, 0.0]


def test_rejects_an_unparseable_timestamp(tmp_path, toy_tables):
    videos = toy_tables["videos"].astype({"published_at": str})
    videos.loc[4, "published_at"] = "last tuesday"
    toy_tables["videos"] = videos
    report = _reject(tmp_path, toy_tables, suffix=".csv")
    _named(report, "videos", "published_at", "expect_column_values_to_be_null")
    finding = next(f for f in report.errors if f.column == "published_at")
    assert finding.examples == ["last tuesday"] and finding.check == "value parses as a timestamp"


def test_rejects_a_registration_in_the_future(tmp_path, toy_tables):
    toy_tables["users"].loc[0, "registered_at"] = pd.Timestamp.now(tz="UTC") + pd.Timedelta("30D")
    _named(
        _reject(tmp_path, toy_tables),
        "users",
        "registered_at",
        "expect_column_values_to_be_between",
    )


def test_rejects_an_event_in_the_future(tmp_path, toy_tables):
    toy_tables["events"].loc[7, "ts"] = pd.Timestamp("2200-01-01", tz="UTC")
    report = _reject(tmp_path, toy_tables)
    _named(report, "events", "ts", "expect_column_values_to_be_between")
    assert next(f for f in report.errors if f.column == "ts").check == (
        "timestamp is not in the future"
    )


def test_rejects_a_flag_that_is_not_0_or_1(tmp_path, toy_tables):
    toy_tables["events"].loc[[1, 2, 3], "clicked"] = [2, -1, 7]
    report = _reject(tmp_path, toy_tables)
    _named(report, "events", "clicked", "expect_column_values_to_be_in_set")
    assert sorted(next(f for f in report.errors if f.column == "clicked").examples) == [-1, 2, 7]


def test_rejects_a_flag_that_is_not_a_number(tmp_path, toy_tables):
    events = toy_tables["events"].astype({"disliked": object})
    events.loc[0, "disliked"] = "yes"
    toy_tables["events"] = events
    report = _reject(tmp_path, toy_tables, suffix=".csv")
    _named(report, "events", "disliked", "expect_column_values_to_be_null")
    assert next(f for f in report.errors if f.column == "disliked").examples == ["yes"]


def test_rejects_a_negative_play_time(tmp_path, toy_tables):
    toy_tables["events"].loc[0, "play_time_s"] = -3.0
    report = _reject(tmp_path, toy_tables)
    assert any(
        f.column == "play_time_s" and f.check == "play time is not negative" for f in report.errors
    )


def test_rejects_a_play_time_absurdly_above_the_duration(tmp_path, toy_tables):
    events, videos = toy_tables["events"], toy_tables["videos"]
    duration = videos.set_index("video_id").loc[events.loc[0, "video_id"], "duration_s"]
    events.loc[0, "play_time_s"] = duration * 1000
    report = _reject(tmp_path, toy_tables)
    finding = next(f for f in report.errors if f.column == "play_time_s")
    assert finding.expectation == "expect_column_values_to_be_between"
    assert finding.check.startswith("play time is at most 100") and finding.unexpected_count == 1


def test_rejects_an_event_on_an_unknown_video(tmp_path, toy_tables):
    toy_tables["events"].loc[[0, 1], "video_id"] = "v-nowhere"
    report = _reject(tmp_path, toy_tables)
    _named(report, "events", "video_id", "expect_column_values_to_be_null")
    finding = next(f for f in report.errors if f.column == "video_id")
    assert finding.check == "id is known in videos" and finding.examples[0] == "v-nowhere"


def test_rejects_an_event_by_an_unknown_user(tmp_path, toy_tables):
    toy_tables["events"].loc[9, "user_id"] = "u-nobody"
    _named(_reject(tmp_path, toy_tables), "events", "user_id", "expect_column_values_to_be_null")


def test_rejects_an_unknown_source_video(tmp_path, toy_tables):
    toy_tables["events"].loc[3, "source_video_id"] = "v-ghost"
    _named(
        _reject(tmp_path, toy_tables),
        "events",
        "source_video_id",
        "expect_column_values_to_be_null",
    )


def test_rejects_repeated_events(tmp_path, toy_tables):
    events = toy_tables["events"]
    toy_tables["events"] = pd.concat([events, events.sample(5, random_state=1)], ignore_index=True)
    _named(
        _reject(tmp_path, toy_tables),
        "events",
        "user_id, video_id, ts",
        "expect_compound_columns_to_be_unique",
    )


def test_rejects_a_user_feature_that_is_not_a_number(tmp_path, toy_tables):
    users = toy_tables["users"].astype({"level": object})
    users.loc[0, "level"] = "gold"
    toy_tables["users"] = users
    _named(
        _reject(tmp_path, toy_tables, suffix=".csv"),
        "users",
        "level",
        "expect_column_values_to_be_null",
    )


def test_every_failure_is_reported_at_once(tmp_path, toy_tables):
    toy_tables["events"].loc[0, "clicked"] = 5
    toy_tables["videos"].loc[0, "duration_s"] = 0.0
    toy_tables["users"].loc[1, "user_id"] = toy_tables["users"].loc[0, "user_id"]
    report = _reject(tmp_path, toy_tables)
    assert {f.table for f in report.errors} == {"events", "videos", "users"}
    text = report.summary()
    assert "events.clicked: flag is 0 or 1" in text and "videos.duration_s" in text


def test_a_failed_gate_leaves_the_previous_validated_tables_as_they_were(tmp_path, toy_tables):
    config = _config(tmp_path, toy_tables)
    first = run_validate(config)
    before = read_table(first.folder / "events.parquet")
    toy_tables["events"].loc[0, "liked"] = 3
    broken = _config(tmp_path, toy_tables)
    with pytest.raises(GateFailed):
        run_validate(broken)
    pd.testing.assert_frame_equal(read_table(first.folder / "events.parquet"), before)


# --- the real data set ------------------------------------------------------------------------


@pytest.mark.kuairand
@pytest.mark.slow
def test_kuairand_passes_the_gate_with_every_event(tmp_path, kuairand_dir):
    from pipelines.data.kuairand import load_kuairand

    dataset = load_config(overrides=["data.dataset=kuairand"]).dataset
    tables = load_kuairand(kuairand_dir, dataset)
    config = _config(tmp_path, tables, dataset="kuairand")
    validated = run_validate(config)
    assert validated.rows["events"] == 94_784
    assert len(read_table(validated.folder / "events.parquet")) == 94_784
    # the raw log's repeated rows are reported, within the data set's tolerance
    assert [f.check for f in validated.report.warnings] == ["an event is not repeated"]
