"""The validate step: read the three input tables, pass them through the input gate, and only
if it passes write them, in contract types, to the data set's `validated` folder.

A failed gate exits non-zero, names every failed expectation, leaves HTML data docs in the
reports folder and writes nothing downstream (the previous validated folder stays as it was).
Where events lack `source_video_id` it is derived first, ordering events by `ts` read the way
the gate reads it (where `user_id`, `video_id` or `ts` is missing, the gate names it instead). A
file that is not a table (an empty directory, a CSV file with another delimiter) is not read:
the gate names the file and what it is. A data set's own column names are mapped to the
contract's first (`datasets.<name>.columns`); a contract column still missing is named with the
file's columns and the mapping that would supply it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from pipelines import tracking, workspace
from pipelines.columns import apply_mapping, missing_column_hint
from pipelines.config import Config
from pipelines.data.contract import EVENTS, schemas_for, to_utc
from pipelines.data.io import (
    file_shape,
    publish_folder,
    read_table,
    write_json,
    write_table,
)
from pipelines.data.sessions import fill_source_video_ids
from pipelines.gate_report import GateFailed, GateReport
from pipelines.gates import run_input_gate
from pipelines.interactions import with_clicks
from pipelines.profile_checks import ProfileSettings

log = logging.getLogger(__name__)

DERIVED_FROM = ("user_id", "video_id", "ts")  # what deriving source_video_id reads


@dataclass
class Validated:
    report: GateReport
    folder: Path
    rows: dict[str, int]


def run_validate(config: Config) -> Validated:
    files = workspace.input_files(config)
    docs_dir = workspace.reports_dir(config) / "input_gate"
    with tracking.step_run(
        "validate", {"dataset": config.data.dataset, **{f"{k}_file": v for k, v in files.items()}}
    ):
        started = time.perf_counter()
        shapes = {name: file_shape(path) for name, path in files.items()}
        tables = {
            name: read_table(path) if shapes[name].holds_table else pd.DataFrame()
            for name, path in files.items()
        }
        present = {name: list(frame.columns) for name, frame in tables.items()}
        tables = apply_mapping(tables, config.dataset.columns)
        tables[EVENTS] = with_clicks(tables[EVENTS], config)
        if "source_video_id" not in tables[EVENTS].columns:
            tables[EVENTS] = with_source_video_ids(tables[EVENTS], config)
        report, conformed = run_input_gate(
            tables,
            schemas_for(config.dataset),
            config.gate_settings,
            docs_dir,
            config.data.csv_list_separator,
            sources=files,
            files=shapes,
            profile=ProfileSettings.from_config(config),
            hints=lambda finding: missing_column_hint(
                finding, present, config.data.dataset, config.dataset.columns
            ),
        )
        rows = {name: len(frame) for name, frame in tables.items()}
        mlflow.log_metrics(
            {
                **{f"{name}_rows": count for name, count in rows.items()},
                "gate_failed_expectations": len(report.errors),
                "gate_warnings": len(report.warnings),
                "gate_seconds": time.perf_counter() - started,
            }
        )
        mlflow.log_artifacts(str(docs_dir), artifact_path="input_gate")
        if not report.success:
            mlflow.set_tag("gate", "failed")
            raise GateFailed(report)
        mlflow.set_tag("gate", "passed")
        for finding in (f for f in report.warnings if not f.tolerated):  # profile checks'
            log.warning("input gate: %s; hint: %s", finding.describe(), finding.hint)
        target = workspace.validated_dir(config)
        with publish_folder(target) as scratch:
            for name, frame in conformed.items():
                write_table(frame, scratch / f"{name}.parquet")
            write_json(
                {
                    "rows": rows,
                    "sources": {k: str(v) for k, v in files.items()},
                    "gate": report.to_dict(),
                },
                scratch / "manifest.json",
            )
        log.info("validated %s -> %s", ", ".join(f"{n} {c:,}" for n, c in rows.items()), target)
        return Validated(report, target, rows)


def with_source_video_ids(events: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Raw events with `source_video_id` derived. The derivation orders by `ts` parsed as the
    gate parses it (zones per value, epoch numbers detected), while the raw `ts` stays for the
    gate to judge. Without `user_id`, `video_id` or `ts` nothing is derived (the column is left
    empty): the gate names what is missing."""
    if not set(DERIVED_FROM) <= set(events.columns):
        return events.assign(source_video_id=None)
    log.info(
        "events have no source_video_id: deriving it (window %s)", config.dataset.source_window
    )
    parsed = events
    if "ts" in events.columns:
        parsed = events.assign(ts=to_utc(events["ts"], config.gate_settings.epoch_ms_from))
    derived = fill_source_video_ids(parsed, config.dataset.source_window, config.dataset.timezone)
    return events.assign(source_video_id=derived["source_video_id"])
