"""The gate suites themselves: what each table is checked for, and how findings are worded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import ConfigError, load_config
from pipelines.data.contract import schemas_for
from pipelines.data.io import FileShape
from pipelines.gate_report import Finding, GateReport
from pipelines.gates import (
    epoch_hint,
    file_check_findings,
    input_suites,
    list_hint,
    repeated_column_findings,
)

NOW = pd.Timestamp("2026-06-01", tz="UTC")


def test_every_expectation_names_its_table_column_and_check(config):
    suites = input_suites(schemas_for(config.dataset), config.gate_settings, NOW)
    assert set(suites) == {"videos", "users", "events"}
    for table, expectations in suites.items():
        for expectation in expectations:
            assert expectation.meta["table"] == table
            assert expectation.meta["check"]


def test_suites_follow_the_data_sets_configured_columns():
    kuairand = load_config(overrides=["data.dataset=kuairand"])
    suites = input_suites(schemas_for(kuairand.dataset), kuairand.gate_settings, NOW)
    present = {e.meta["column"] for e in suites["videos"] if e.meta["check"] == "column is present"}
    assert {"author_id", "music_id", "upload_type", "tags"} <= present
    assert "styles" not in present
    repeated = next(e for e in suites["events"] if e.meta["check"] == "an event is not repeated")
    assert repeated.mostly == 1.0 - 0.07


def test_a_finding_reads_as_a_sentence():
    finding = Finding(
        "events",
        "clicked",
        "flag is 0 or 1",
        "expect_column_values_to_be_in_set",
        unexpected_count=3,
        row_count=1000,
        examples=[2, -1, 7],
    )
    assert finding.describe() == (
        "events.clicked: flag is 0 or 1 [expect_column_values_to_be_in_set]: "
        "3 of 1,000 rows (0.30%), e.g. 2, -1, 7"
    )


def test_events_are_bounded_below_and_numbers_checked_finite(config):
    suites = input_suites(schemas_for(config.dataset), config.gate_settings, NOW)
    bound = next(e for e in suites["events"] if e.meta["check"].startswith("event is not before"))
    assert bound.meta["check"] == "event is not before 2000-01-01"
    assert pd.Timestamp(bound.min_value) == pd.Timestamp("2000-01-01", tz="UTC")
    assert "gate.min_event_ts" in bound.meta["hint"]
    finite = {e.meta["column"] for e in suites["videos"] if e.meta["check"] == "number is finite"}
    assert finite == {"duration_s"}
    repeated = next(e for e in suites["events"] if e.meta["check"] == "an event is not repeated")
    assert repeated.ignore_row_if == "any_value_is_missing"  # an unparsed ts is reported once


def test_the_gate_settings_are_checked_when_the_configuration_loads():
    unquoted = load_config(overrides=["gate.min_event_ts=1990-01-01"])  # YAML reads a date
    assert unquoted.gate_settings.min_event_ts == "1990-01-01"
    with pytest.raises(ConfigError, match="gate.min_event_ts .*'last year' is not an ISO date"):
        load_config(overrides=["datasets.synthetic.gate.min_event_ts=last year"])
    with pytest.raises(ConfigError, match="gate.epoch_ms_from .* must be above 0"):
        load_config(overrides=["gate.epoch_ms_from=0"])


def test_a_hint_is_printed_under_its_finding():
    (finding,) = repeated_column_findings({"videos": {"duration_s": 2}}, {"videos": 10})
    report = GateReport("input", False, [finding], [], 3, sources={"videos": "/d/videos.csv"})
    lines = report.summary().splitlines()
    assert lines[1] == (
        "  x videos.duration_s: column is named once in the file "
        "[file_header_names_each_column_once]: observed 2 times, e.g. 'duration_s'"
    )
    assert lines[2].startswith("      hint: keep one column named 'duration_s'")
    assert lines[3] == "  videos: /d/videos.csv"


def test_epoch_numbers_among_dates_get_a_hint_naming_the_unit():
    finding = Finding(
        "events", "ts", "value parses as a timestamp", "expect_column_values_to_be_null", 1, 9
    )
    finding.examples = ["1700000000000"]
    assert "looks like epoch milliseconds" in epoch_hint(finding, 1e11).hint


def test_every_id_column_is_checked_well_formed_and_lists_joined(config):
    suites = input_suites(schemas_for(config.dataset), config.gate_settings, NOW, "|")
    checked = {
        (table, e.meta["column"])
        for table, rules in suites.items()
        for e in rules
        if e.meta["check"] == "id is well-formed"
    }
    assert checked == {
        ("videos", "video_id"),
        ("users", "user_id"),
        ("events", "user_id"),
        ("events", "video_id"),
        ("events", "source_video_id"),
    }
    listed = {
        e.meta["column"]
        for e in suites["videos"]
        if e.meta["check"] == "list is its items joined with '|'"
    }
    assert listed == {"styles", "actors", "staff", "tags"}


def test_a_list_written_as_a_numpy_repr_gets_a_hint_showing_it_joined():
    finding = Finding(
        "videos",
        "tags",
        "list is its items joined with ';'",
        "expect_column_values_to_be_null",
        1,
        9,
    )
    finding.examples = ["['drama' 'crime']"]
    hint = list_hint(finding, ";").hint
    assert hint.startswith("\"['drama' 'crime']\" should read 'drama;crime': write a list")


def test_file_findings_name_a_directory_another_delimiter_and_a_nul():
    shapes = {
        "videos": FileShape(Path("/d/videos.parquet"), empty_directory=True),
        "users": FileShape(
            Path("/d/users.csv"), csv=True, header=("a", "b"), nul_line=(3, "u\x00")
        ),
        "events": FileShape(
            Path("/d/events.csv"), csv=True, header=("user_id\tts",), first_row=("u1\t2026",)
        ),
    }
    findings, checks = file_check_findings(shapes, {"videos": 0, "users": 5, "events": 9})
    assert checks == 1 + 4 + 4
    by_table = {f.table: f for f in findings}
    assert by_table["videos"].observed == "a directory with no Parquet file in it, not a file"
    assert by_table["videos"].examples == ["videos.parquet"]
    assert by_table["users"].observed == "a NUL character on line 3"
    assert by_table["events"].observed == "one column named 'user_id\\tts'"
    assert by_table["events"].hint.startswith("the file looks tab-delimited")
    assert all(f.column is None and f.hint for f in findings)


def test_the_gates_import_in_a_plain_python_c_process():
    # With pyspark lacking its connect extras, importing Great Expectations from `python -c`
    # made pyspark call sys.exit(0) silently; the pinned extras prevent it. The gates import
    # Great Expectations only when they run (see test_imports.py), so import it here too.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pipelines.gates, great_expectations.expectations; print('imported')",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "imported" in done.stdout, done.stderr
