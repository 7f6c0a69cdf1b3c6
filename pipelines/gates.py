"""Great Expectations gates: one suite per input table (videos, users, events), run together.

A failed gate names every failed expectation with its table, column, failing count and examples,
and leaves its results as HTML data docs; the caller then writes nothing downstream.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from pipelines.config import GateSettings
from pipelines.data.contract import (
    EVENT_FLAGS,
    EVENTS,
    FLAG,
    FLOAT,
    INT,
    TIMESTAMP,
    USERS,
    VIDEOS,
    Conformed,
    TableSchema,
    conform,
)
from pipelines.gate_report import Finding, GateReport

log = logging.getLogger(__name__)

# Helper columns the suites read, named so that the data docs read plainly.
UNPARSEABLE = "{} (values that do not parse)"
UNKNOWN = "{} (ids not known)"
PLAY_RATIO = "play_time_s / duration_s"
DOCS_SITE = "gate_docs"


def expectation(kind: type, table: str, about: str | None, check: str, **kwargs) -> object:
    """An expectation whose `meta` names the table and contract column it is about (its own
    `column` may be a helper column) and the check in words."""
    meta = {"table": table, "column": about, "check": check}
    return kind(meta=meta, **kwargs)


def input_check_frames(
    tables: Mapping[str, pd.DataFrame],
    schemas: Mapping[str, TableSchema],
    list_separator: str = "|",
) -> tuple[dict[str, pd.DataFrame], dict[str, Conformed]]:
    """Conform each table and add the helper columns the suites read: raw values that did not
    parse, ids that reference nothing, and play time relative to the video's duration."""
    conformed = {name: conform(tables[name], schemas[name], list_separator) for name in schemas}
    frames = {}
    for name, result in conformed.items():
        frame = result.frame.copy()
        for column in schemas[name].of_kind(TIMESTAMP, FLOAT, INT, FLAG):
            bad = pd.Series(None, index=frame.index, dtype=object)
            values = result.unparseable.get(column)
            if values is not None and len(values):
                bad.loc[values.index] = values.astype(str)
            frame[UNPARSEABLE.format(column)] = bad
        frames[name] = frame
    events, videos, users = frames[EVENTS], frames[VIDEOS], frames[USERS]
    known_videos = set(videos["video_id"].dropna()) if "video_id" in videos else set()
    known_users = set(users["user_id"].dropna()) if "user_id" in users else set()
    for column, known in (
        ("video_id", known_videos),
        ("source_video_id", known_videos),
        ("user_id", known_users),
    ):
        if column in events:
            ids = events[column]
            events[UNKNOWN.format(column)] = ids.where(ids.notna() & ~ids.isin(known), None)
    if {"video_id", "play_time_s"} <= set(events) and {"video_id", "duration_s"} <= set(videos):
        duration = events["video_id"].map(
            videos.drop_duplicates("video_id").set_index("video_id")["duration_s"]
        )
        events[PLAY_RATIO] = events["play_time_s"] / duration.where(duration > 0)
    return frames, conformed


def input_suites(
    schemas: Mapping[str, TableSchema], settings: GateSettings, now: pd.Timestamp
) -> dict[str, list]:
    """The expectations of each input table, each carrying table, column and check in `meta`."""
    latest = (now + pd.Timedelta(settings.future_slack)).isoformat()
    suites: dict[str, list] = {name: [] for name in schemas}

    def add(kind: type, table: str, about: str | None, check: str, **kwargs) -> None:
        suites[table].append(expectation(kind, table, about, check, **kwargs))

    for name, schema in schemas.items():
        add(gxe.ExpectTableRowCountToBeBetween, name, None, "table is not empty", min_value=1)
        for column in schema.columns:
            col = column.name
            add(gxe.ExpectColumnToExist, name, col, "column is present", column=col)
            if not column.nullable:
                add(gxe.ExpectColumnValuesToNotBeNull, name, col, "value is present", column=col)
            if column.kind in (TIMESTAMP, FLOAT, INT, FLAG):
                kind = "a timestamp" if column.kind == TIMESTAMP else "a number"
                add(
                    gxe.ExpectColumnValuesToBeNull,
                    name,
                    col,
                    f"value parses as {kind}",
                    column=UNPARSEABLE.format(col),
                )
            if column.kind == TIMESTAMP:
                add(
                    gxe.ExpectColumnValuesToBeBetween,
                    name,
                    col,
                    "timestamp is not in the future",
                    column=col,
                    max_value=latest,
                )
        if len(schema.key) == 1:
            add(
                gxe.ExpectColumnValuesToBeUnique,
                name,
                schema.key[0],
                "key is unique",
                column=schema.key[0],
            )

    add(
        gxe.ExpectColumnValuesToBeBetween,
        VIDEOS,
        "duration_s",
        "duration is positive",
        column="duration_s",
        min_value=0,
        strict_min=True,
    )
    key = list(schemas[EVENTS].key)
    add(
        gxe.ExpectCompoundColumnsToBeUnique,
        EVENTS,
        ", ".join(key),
        "an event is not repeated",
        column_list=key,
        mostly=1.0 - settings.duplicate_event_tolerance,
    )
    for flag in EVENT_FLAGS:
        add(
            gxe.ExpectColumnValuesToBeInSet,
            EVENTS,
            flag,
            "flag is 0 or 1",
            column=flag,
            value_set=[0, 1],
        )
    add(
        gxe.ExpectColumnValuesToBeBetween,
        EVENTS,
        "play_time_s",
        "play time is not negative",
        column="play_time_s",
        min_value=0,
    )
    add(
        gxe.ExpectColumnValuesToBeBetween,
        EVENTS,
        "play_time_s",
        f"play time is at most {settings.max_play_ratio:g} x the video's duration",
        column=PLAY_RATIO,
        max_value=settings.max_play_ratio,
    )
    for column, table in (("video_id", VIDEOS), ("source_video_id", VIDEOS), ("user_id", USERS)):
        add(
            gxe.ExpectColumnValuesToBeNull,
            EVENTS,
            column,
            f"id is known in {table}",
            column=UNKNOWN.format(column),
        )
    return suites


def run_suites(
    gate: str,
    frames: Mapping[str, pd.DataFrame],
    suites: Mapping[str, list],
    docs_dir: Path | None,
    examples: int = 5,
    sources: Mapping[str, object] | None = None,
) -> GateReport:
    """Validate each frame against its suite (one checkpoint per table: a checkpoint takes one
    dataframe per run); optionally build the HTML data docs into `docs_dir` once, at the end,
    replacing what was there."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas(gate)
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": examples}
    errors, warnings, total = [], [], 0
    for name, expectations in suites.items():
        suite = context.suites.add(gx.ExpectationSuite(name=f"{gate}.{name}"))
        for rule in expectations:
            suite.add_expectation(rule)
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{gate}.{name}", data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{gate}.{name}",
                validation_definitions=[definition],
                result_format=result_format,
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frames[name]})
        for validation in outcome.run_results.values():
            e, w, n = _findings(validation.results, len(frames[name]))
            errors += e
            warnings += w
            total += n
    if docs_dir is not None:
        docs_dir = Path(docs_dir)
        shutil.rmtree(docs_dir, ignore_errors=True)
        context.add_data_docs_site(
            DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        context.build_data_docs(site_names=[DOCS_SITE])
    docs_index = docs_dir / "index.html" if docs_dir is not None else None
    report = GateReport(
        gate,
        not errors,
        errors,
        warnings,
        total,
        docs_index,
        {name: str(path) for name, path in (sources or {}).items()},
    )
    if docs_dir is not None:
        (docs_dir / "gate_result.json").write_text(
            json.dumps(report.to_dict(), indent=2, default=str)
        )
    return report


def _findings(results: list, row_count: int) -> tuple[list[Finding], list[Finding], int]:
    errors, warnings = [], []
    missing = {
        r.expectation_config.kwargs.get("column")
        for r in results
        if r.expectation_config.type == "expect_column_to_exist" and not r.success
    }
    unparseable = {
        (r.expectation_config.meta or {}).get("column"): r.result.get("unexpected_count")
        for r in results
        if not r.success and "parses as" in (r.expectation_config.meta or {}).get("check", "")
    }
    for result in results:
        config = result.expectation_config
        meta = config.meta or {}
        details = result.result or {}
        finding = Finding(
            table=meta.get("table", "?"),
            column=meta.get("column"),
            check=meta.get("check", config.type),
            expectation=config.type,
            unexpected_count=details.get("unexpected_count"),
            row_count=row_count,
            examples=list(details.get("partial_unexpected_list") or []),
            observed=details.get("observed_value"),
        )
        if not result.success:
            # A missing column fails every expectation on it: report it once, as missing.
            if meta.get("column") in missing and config.type != "expect_column_to_exist":
                continue
            # A value that does not parse is null once conformed: name it once, as unparseable.
            if (
                config.type == "expect_column_values_to_not_be_null"
                and unparseable.get(meta.get("column")) == finding.unexpected_count
            ):
                continue
            errors.append(finding)
        elif finding.unexpected_count:
            warnings.append(finding)
    return errors, warnings, len(results)


def run_input_gate(
    tables: Mapping[str, pd.DataFrame],
    schemas: Mapping[str, TableSchema],
    settings: GateSettings,
    docs_dir: Path | None = None,
    list_separator: str = "|",
    now: pd.Timestamp | None = None,
    sources: Mapping[str, object] | None = None,
) -> tuple[GateReport, dict[str, pd.DataFrame]]:
    """Run the input gate over raw tables (read from `sources`, the files the report names);
    return the report and the conformed tables, which the caller may write only if the report
    succeeded."""
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    frames, conformed = input_check_frames(tables, schemas, list_separator)
    suites = input_suites(schemas, settings, now)
    log.info(
        "input gate: checking %s against %d expectations",
        ", ".join(f"{name} {len(frame):,} rows" for name, frame in frames.items()),
        sum(len(suite) for suite in suites.values()),
    )
    report = run_suites("input", frames, suites, docs_dir, settings.examples, sources)
    log.info(
        "input gate %s: %d expectations, %d failed, %d within tolerance",
        "passed" if report.success else "FAILED",
        report.expectations,
        len(report.errors),
        len(report.warnings),
    )
    return report, {name: result.frame for name, result in conformed.items()}
