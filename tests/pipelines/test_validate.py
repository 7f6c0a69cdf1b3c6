"""The validate step and its input gate: good data passes and is written; each kind of corrupted
input is rejected with the expected expectation named, data docs saved and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import workspace
from pipelines.cli import EXIT_GATE, main
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


# --- holes of issue 16: each bad input is named in the gate's report and exits 3 ----------------


def _cli_rejects(
    tmp_path: Path,
    tables: dict[str, pd.DataFrame],
    capsys,
    suffix: str = ".csv",
    written: dict[str, Path] | None = None,
) -> str:
    """Run `validate` from the command line on tables written as files (or on the files
    `written` for some tables): it must exit with the gate's code 3; returns what it printed on
    stderr (the gate's report)."""
    overrides = []
    for name, frame in tables.items():
        path = (written or {}).get(name) or write_table(
            frame, tmp_path / "input" / f"{name}{suffix}"
        )
        overrides += ["--set", f"datasets.synthetic.files.{name}={path}"]
    code = main(["--workspace", str(tmp_path / "workspace"), *overrides, "validate"])
    assert code == EXIT_GATE
    assert not (tmp_path / "workspace/data/synthetic/validated").exists()
    return capsys.readouterr().err


def _says(err: str, tmp_path: Path, table: str, where: str, *words: str) -> None:
    """The report names the table and column, the file, and the example and hint `words`."""
    assert f"x {where}: " in err, err
    assert f"{table}: {tmp_path / 'input'}" in err, err
    assert "hint: " in err, err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err and "Warning" not in err, err


def test_mixed_time_zones_are_parsed_per_value_naive_as_utc(tmp_path, toy_tables):
    events = toy_tables["events"]
    instants = events["ts"].copy()
    text = instants.dt.strftime("%Y-%m-%d %H:%M:%S.%f").copy()  # naive: UTC by the contract
    text[0] = instants[0].tz_convert("Asia/Shanghai").isoformat()  # +08:00, then naive rows
    text[2] = instants[2].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text[4] = instants[4].tz_convert("America/New_York").isoformat()
    assert text[0].endswith("+08:00") and text[2].endswith("Z") and "+" not in text[1]
    toy_tables["events"] = events.assign(ts=text)
    validated = run_validate(_config(tmp_path, toy_tables, suffix=".csv"))
    read = read_table(validated.folder / "events.parquet")["ts"]
    pd.testing.assert_series_equal(read, instants, check_names=False)
    assert read[1] == instants[1] and read[5] == instants[5]  # naive rows after offset rows


def test_epoch_seconds_are_read_as_utc_and_logged(tmp_path, toy_tables, caplog):
    events = toy_tables["events"].drop(columns="source_video_id")  # derived from ts as well
    seconds = events["ts"].astype("int64") // 10**9
    toy_tables["events"] = events.assign(ts=seconds)
    with caplog.at_level("INFO", logger="pipelines.data.contract"):
        validated = run_validate(_config(tmp_path, toy_tables, suffix=".csv"))
    assert validated.report.success and not validated.report.warnings
    read = read_table(validated.folder / "events.parquet")
    assert read["ts"].tolist() == pd.to_datetime(seconds, unit="s", utc=True).tolist()
    assert read["source_video_id"].notna().any()
    assert "events.ts: bare numbers, read as epoch seconds" in caplog.text


def test_epoch_milliseconds_pass_without_a_repeated_event_finding(tmp_path, toy_tables):
    millis = toy_tables["events"]["ts"].astype("int64") // 10**6
    toy_tables["events"] = toy_tables["events"].assign(ts=millis.astype(str))
    validated = run_validate(_config(tmp_path, toy_tables, suffix=".csv"))
    assert validated.report.success and not validated.report.warnings
    read = read_table(validated.folder / "events.parquet")["ts"]
    assert read.tolist() == pd.to_datetime(millis, unit="ms", utc=True).tolist()


def test_epoch_numbers_among_dates_are_refused_with_a_hint(tmp_path, toy_tables, capsys):
    events = toy_tables["events"].astype({"ts": str})
    events.loc[3, "ts"] = "828124615"
    toy_tables["events"] = events
    err = _cli_rejects(tmp_path, toy_tables, capsys)
    _says(err, tmp_path, "events", "events.ts", "'828124615'", "looks like epoch seconds")
    assert "an event is not repeated" not in err and "out of range" not in err


def test_rejects_an_event_before_the_configured_lower_bound(tmp_path, toy_tables, capsys):
    toy_tables["events"].loc[6, "ts"] = pd.Timestamp("1970-01-01 00:00:10", tz="UTC")
    err = _cli_rejects(tmp_path, toy_tables, capsys)
    _says(err, tmp_path, "events", "events.ts", "event is not before 2000-01-01", "1970-01-01")
    assert "gate.min_event_ts" in err


def test_the_lower_bound_on_events_is_configurable(tmp_path, toy_tables):
    toy_tables["events"].loc[6, "ts"] = pd.Timestamp("1999-06-01", tz="UTC")
    report = _reject(tmp_path, toy_tables)
    finding = next(f for f in report.errors if f.column == "ts")
    assert finding.check == "event is not before 2000-01-01" and finding.unexpected_count == 1
    assert finding.examples == [pd.Timestamp("1999-06-01", tz="UTC")]
    config = _config(
        tmp_path / "lower", toy_tables, extra=("datasets.synthetic.gate.min_event_ts=1990-01-01",)
    )
    assert run_validate(config).report.success


def test_rejects_a_column_named_twice_in_a_csv_header(tmp_path, toy_tables, capsys):
    videos = toy_tables["videos"]
    toy_tables["videos"] = pd.concat([videos, videos[["duration_s"]]], axis=1)
    err = _cli_rejects(tmp_path, toy_tables, capsys)
    _says(err, tmp_path, "videos", "videos.duration_s", "column is named once", "observed 2 times")
    assert f"videos: {tmp_path / 'input' / 'videos.csv'}" in err


def test_rejects_numbers_that_are_not_finite(tmp_path, toy_tables, capsys):
    toy_tables["videos"].loc[[2, 5], "duration_s"] = [float("inf"), float("-inf")]
    toy_tables["users"].loc[1, "level"] = float("inf")
    err = _cli_rejects(tmp_path, toy_tables, capsys)
    _says(err, tmp_path, "videos", "videos.duration_s", "number is finite", "'inf'", "'-inf'")
    assert "x users.level: number is finite" in err


def test_non_finite_numbers_are_refused_in_parquet_too(tmp_path, toy_tables):
    toy_tables["videos"].loc[2, "duration_s"] = float("inf")
    report = _reject(tmp_path, toy_tables)
    finding = next(f for f in report.errors if f.check == "number is finite")
    assert (finding.table, finding.column, finding.examples) == ("videos", "duration_s", ["inf"])
    assert finding.hint


def test_rejects_list_cells_written_as_a_python_or_numpy_repr(tmp_path, toy_tables, capsys):
    videos = toy_tables["videos"].copy()
    videos["tags"] = videos["tags"].map(np.array)  # as Parquet reads lists back
    path = tmp_path / "input" / "videos.csv"
    path.parent.mkdir(parents=True)
    videos.to_csv(path, index=False)  # pandas writes ['x' 'y'] and ['x', 'y']
    assert "['fantasy-12' 'fantasy-00'" in path.read_text()
    err = _cli_rejects(tmp_path, toy_tables, capsys, written={"videos": path})
    _says(err, tmp_path, "videos", "videos.tags", "list is its items joined with '|'")
    assert "\"['fantasy-12' 'fantasy-00' 'fantasy-18' 'fantasy-09']\" should read " in err
    assert "'fantasy-12|fantasy-00|fantasy-18|fantasy-09'" in err
    assert "x videos.styles: list is its items joined with '|'" in err  # the Python list repr
    assert "\"['fantasy', 'fantasy-style2']\" should read 'fantasy|fantasy-style2'" in err
    assert f"videos: {path}" in err


def test_rejects_ids_the_http_api_would_refuse(tmp_path, toy_tables, capsys):
    videos, events = toy_tables["videos"], toy_tables["events"]
    renamed = {"v000003": "v|3", "v000004": "v,4", "v000005": " v5", "v000006": "v6 "}
    videos["video_id"] = videos["video_id"].replace(renamed)
    events["video_id"] = events["video_id"].replace(renamed)
    events["source_video_id"] = events["source_video_id"].replace(renamed)
    users, user = toy_tables["users"], toy_tables["users"].loc[7, "user_id"]
    users.loc[7, "user_id"] = events.loc[events["user_id"] == user, "user_id"] = "u\n7"
    err = _cli_rejects(tmp_path, toy_tables, capsys)
    _says(err, tmp_path, "videos", "videos.video_id", "id is well-formed", "the HTTP API")
    for bad in renamed.values():
        assert repr(bad) in err, bad
    assert "x users.user_id: id is well-formed" in err and "'u\\n7'" in err
    assert "x events.video_id: id is well-formed" in err
    assert "x events.source_video_id: id is well-formed" in err
    assert "id is known" not in err  # the ids are consistent, only malformed


def test_rejects_an_id_with_a_nul_in_parquet_and_a_nul_in_csv(tmp_path, toy_tables, capsys):
    toy_tables["users"].loc[2, "user_id"] = "u\x002"
    report = _reject(tmp_path / "parquet", toy_tables)
    finding = next(f for f in report.errors if f.check == "id is well-formed")
    assert (finding.table, finding.column, finding.examples) == ("users", "user_id", ["u\x002"])
    # pandas' CSV parser would read 'u' and drop the rest: the file itself is refused
    err = _cli_rejects(tmp_path / "csv", toy_tables, capsys)
    assert "x users: file holds no NUL character" in err and "NUL character on line 4" in err
    assert "hint: the CSV reader would cut the value short" in err
    assert f"users: {tmp_path / 'csv' / 'input' / 'users.csv'}" in err


def test_rejects_a_semicolon_delimited_csv_naming_the_file(tmp_path, toy_tables, capsys):
    path = tmp_path / "input" / "events.csv"
    path.parent.mkdir(parents=True)
    toy_tables["events"].drop(columns="source_video_id").to_csv(path, sep=";", index=False)
    err = _cli_rejects(tmp_path, toy_tables, capsys, written={"events": path})
    _says(err, tmp_path, "events", "events", "file is comma-separated", "looks semicolon-delimited")
    assert "one column named 'user_id;video_id;ts;clicked;" in err
    assert f"events: {path}" in err
    assert "needed to derive" not in err and "column is present" not in err


def test_rejects_an_empty_directory_named_like_a_table_file(tmp_path, toy_tables, capsys):
    folder = tmp_path / "input" / "events.parquet"
    folder.mkdir(parents=True)
    err = _cli_rejects(tmp_path, toy_tables, capsys, written={"events": folder})
    _says(err, tmp_path, "events", "events", "file holds a table", "a directory", "not a file")
    assert "'events.parquet'" in err and f"events: {folder}" in err
    assert "needed to derive" not in err and "table is not empty" not in err


def test_events_without_their_key_columns_are_named_by_the_gate(tmp_path, toy_tables, capsys):
    events = toy_tables["events"].drop(columns="source_video_id")
    toy_tables["events"] = events.rename(columns={"user_id": "userId", "ts": "timestamp"})
    err = _cli_rejects(tmp_path, toy_tables, capsys)
    assert "x events.user_id: column is present" in err and "x events.ts: column is present" in err
    assert "needed to derive" not in err and "source_video_id: column is present" not in err


def test_the_log_counts_the_file_checks_with_the_expectations(tmp_path, toy_tables, caplog):
    with caplog.at_level("INFO", logger="pipelines.gates"):
        report = run_validate(_config(tmp_path, toy_tables, suffix=".csv")).report
    assert f"against {report.expectations} expectations" in caplog.text
    # As README's sample says: 81, 4 per CSV file and 7 profile checks (4 flags, 1 single-valued
    # attribute, the test window and retention).
    assert report.expectations == 100


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
