"""The gate suites themselves: what each table is checked for, and how findings are worded."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from pipelines.config import load_config
from pipelines.data.contract import schemas_for
from pipelines.gate_report import Finding
from pipelines.gates import input_suites

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


def test_the_gates_import_in_a_plain_python_c_process():
    # With pyspark lacking its connect extras, importing Great Expectations from `python -c`
    # made pyspark call sys.exit(0) silently; the pinned extras prevent it.
    done = subprocess.run(
        [sys.executable, "-c", "import pipelines.gates; print('imported')"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "imported" in done.stdout, done.stderr
