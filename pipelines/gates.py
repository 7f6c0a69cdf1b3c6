"""Great Expectations gates: one suite per input table (videos, users, events), run together.

A failed gate names every failed expectation with its table, column, failing count, examples
and a hint where one is plain, and leaves its results as HTML data docs; the caller then writes
nothing downstream. Checks of a file itself (a directory holding no table; a CSV file with
another delimiter, a column named twice in its header or a NUL character) are findings of the
same report, made before the suites run; a table whose file is not one is named once, by that
finding.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from pipelines.config import GateSettings
from pipelines.data.contract import (
    EPOCH_WORDS,
    EVENT_FLAGS,
    EVENTS,
    FLAG,
    FLOAT,
    ID,
    ID_WORDS,
    INT,
    LIST,
    NUMBER,
    TIMESTAMP,
    USERS,
    VIDEOS,
    Conformed,
    TableSchema,
    conform,
    epoch_unit,
    malformed_ids,
    to_utc,
)
from pipelines.data.io import FOREIGN_DELIMITERS, FileShape
from pipelines.gate_report import Finding, GateReport, finding
from pipelines.profile_checks import ProfileSettings, profile_findings

log = logging.getLogger(__name__)

# Helper columns the suites read, named so that the data docs read plainly.
UNPARSEABLE = "{} (values that do not parse)"
UNKNOWN = "{} (ids not known)"
NONFINITE = "{} (numbers not finite)"
MALFORMED = "{} (ids not well-formed)"
PLAY_RATIO = "play_time_s / duration_s"
DOCS_SITE = "gate_docs"

PARSES_AS = "value parses as {}"
FINITE = "number is finite"
NOT_BEFORE = "event is not before {}"
NAMED_ONCE = "column is named once in the file"
FILE_CHECK = "file_header_names_each_column_once"  # not Great Expectations': read from the file
IS_TABLE, TABLE_CHECK = "file holds a table", "file_is_a_table_file"
COMMAS, COMMAS_CHECK = "file is comma-separated", "file_is_comma_separated"
NO_NUL, NUL_CHECK = "file holds no NUL character", "file_holds_no_nul_character"
LISTED = "list is its items joined with {!r}"
WELL_FORMED = "id is well-formed"
# The items of a list cell written as a Python or NumPy list: its quoted strings.
QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")
HINTS = {
    PARSES_AS.format("a timestamp"): "write ISO 8601 (2026-01-01T10:00:00Z; no zone is UTC), "
    "or the whole column as epoch seconds or milliseconds",
    PARSES_AS.format("a number"): "write plain numbers (3.5); leave the cell empty where the "
    "column may be missing",
    FINITE: "inf and -inf cannot be trained on: write the real value, or drop the row",
    WELL_FORMED: f"an id is {ID_WORDS}, the form the HTTP API accepts (it refuses any other "
    "with 422): strip spaces, and map other ids to this form",
}


def expectation(
    kind: type, table: str, about: str | None, check: str, hint: str | None = None, **kwargs
) -> object:
    """An expectation whose `meta` names the table and contract column it is about (its own
    `column` may be a helper column), the check in words and, optionally, a hint for a failure."""
    meta = {"table": table, "column": about, "check": check}
    if hint:
        meta["hint"] = hint
    return kind(meta=meta, **kwargs)


def input_check_frames(
    tables: Mapping[str, pd.DataFrame],
    schemas: Mapping[str, TableSchema],
    list_separator: str = "|",
    epoch_ms_from: float | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Conformed]]:
    """Conform each table and add the helper columns the suites read: raw values that did not
    parse (list cells written as a Python or NumPy list among them), numbers that are not
    finite, ids not well-formed, ids that reference nothing, and play time relative to the
    video's duration."""
    conformed = {
        name: conform(tables[name], schemas[name], list_separator, epoch_ms_from)
        for name in schemas
    }
    frames = {}
    for name, result in conformed.items():
        frame = result.frame.copy()
        for column in schemas[name].of_kind(TIMESTAMP, FLOAT, INT, FLAG, LIST):
            frame[UNPARSEABLE.format(column)] = _raw_at(frame.index, result.unparseable, column)
        for column in schemas[name].of_kind(FLOAT, INT):
            frame[NONFINITE.format(column)] = _raw_at(frame.index, result.nonfinite, column)
        for column in schemas[name].of_kind(ID):
            ids = frame[column] if column in frame else pd.Series(None, index=frame.index)
            frame[MALFORMED.format(column)] = ids.where(malformed_ids(ids), None).astype(object)
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


def _raw_at(index: pd.Index, raw: Mapping[str, pd.Series], column: str) -> pd.Series:
    """A helper column: the raw value (as text) where `raw[column]` has one, else null."""
    bad = pd.Series(None, index=index, dtype=object)
    values = raw.get(column)
    if values is not None and len(values):
        bad.loc[values.index] = values.astype(str)
    return bad


def input_suites(
    schemas: Mapping[str, TableSchema],
    settings: GateSettings,
    now: pd.Timestamp,
    list_separator: str = "|",
) -> dict[str, list]:
    """The expectations of each input table, each carrying table, column and check in `meta`;
    list cells are checked to be written joined with `list_separator`."""
    import great_expectations.expectations as gxe  # imported here: seconds to load

    latest = (now + pd.Timedelta(settings.future_slack)).isoformat()
    suites: dict[str, list] = {name: [] for name in schemas}

    def add(
        kind: type, table: str, about: str | None, check: str, hint: str | None = None, **kwargs
    ) -> None:
        suites[table].append(expectation(kind, table, about, check, hint, **kwargs))

    def nothing_in(table: str, column: str, check: str, hint: str, helper: str) -> None:
        """The helper column `helper.format(column)` is null on every row."""
        add(
            gxe.ExpectColumnValuesToBeNull,
            table,
            column,
            check,
            hint=hint,
            column=helper.format(column),
        )

    for name, schema in schemas.items():
        add(gxe.ExpectTableRowCountToBeBetween, name, None, "table is not empty", min_value=1)
        for column in schema.columns:
            col = column.name
            add(gxe.ExpectColumnToExist, name, col, "column is present", column=col)
            if not column.nullable:
                add(gxe.ExpectColumnValuesToNotBeNull, name, col, "value is present", column=col)
            # Each of these checks reads a helper column that holds the offending raw value.
            if column.kind in (TIMESTAMP, FLOAT, INT, FLAG):
                check = PARSES_AS.format("a timestamp" if column.kind == TIMESTAMP else "a number")
                nothing_in(name, col, check, HINTS[check], UNPARSEABLE)
            if column.kind == ID:
                nothing_in(name, col, WELL_FORMED, HINTS[WELL_FORMED], MALFORMED)
            if column.kind == LIST:
                check, hint = LISTED.format(list_separator), list_hint_text(None, list_separator)
                nothing_in(name, col, check, hint, UNPARSEABLE)
            if column.kind in (FLOAT, INT):
                nothing_in(name, col, FINITE, HINTS[FINITE], NONFINITE)
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
    earliest = to_utc(pd.Series([settings.min_event_ts])).iloc[0]
    add(
        gxe.ExpectColumnValuesToBeBetween,
        EVENTS,
        "ts",
        NOT_BEFORE.format(settings.min_event_ts),
        hint=f"a date this early is usually epoch 0 or a unit mix-up; if the log really is "
        f"older, lower gate.min_event_ts ({settings.min_event_ts})",
        column="ts",
        min_value=earliest.isoformat(),
    )
    key = list(schemas[EVENTS].key)
    add(
        gxe.ExpectCompoundColumnsToBeUnique,
        EVENTS,
        ", ".join(key),
        "an event is not repeated",
        column_list=key,
        mostly=1.0 - settings.duplicate_event_tolerance,
        # A key value that is missing or did not parse is reported once, by its own check.
        ignore_row_if="any_value_is_missing",
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
    file_findings: Sequence[Finding] = (),
    file_checks: int = 0,
    refine: Callable[[Finding], Finding | None] | None = None,
    file_warnings: Sequence[Finding] = (),
) -> GateReport:
    """Validate each frame against its suite (one checkpoint per table: a checkpoint takes one
    dataframe per run); optionally build the HTML data docs into `docs_dir` once, at the end,
    replacing what was there. `file_findings` (errors) of `file_checks` checks made on the files
    themselves join the report first (`file_warnings`: warnings of such checks); `refine`, if
    given, rewords each finding (its hint), or drops it by returning None."""
    import great_expectations as gx  # imported here: seconds to load, and only a gate needs it

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas(gate)
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": examples}
    errors, warnings, total = list(file_findings), list(file_warnings), file_checks
    for name, expectations in suites.items():
        # Expectations added before the suite is stored, then stored in one write: added to a
        # stored suite, each rewrites the whole suite (tens of ms an expectation).
        suite = gx.ExpectationSuite(name=f"{gate}.{name}")
        for rule in expectations:
            suite.add_expectation(rule)
        suite = context.suites.add(suite)
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
    if refine is not None:
        errors = [f for f in map(refine, errors) if f is not None]
        warnings = [f for f in map(refine, warnings) if f is not None]
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
            hint=meta.get("hint"),
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


def epoch_hint(finding: Finding, epoch_ms_from: float) -> Finding:
    """An unparseable-timestamp finding whose examples are bare numbers says so: the column
    mixes epoch numbers and dates (a column of numbers only is read as epoch time)."""
    numbers = [v for v in finding.examples if isinstance(v, str) and re.fullmatch(NUMBER, v)]
    if finding.check != PARSES_AS.format("a timestamp") or not numbers:
        return finding
    unit = EPOCH_WORDS[epoch_unit(pd.to_numeric(pd.Series(numbers)), epoch_ms_from)]
    finding.hint = (
        f"{numbers[0]!r} looks like {unit}, among dates: write the whole column one way, "
        "as ISO 8601 or as epoch numbers"
    )
    return finding


def list_hint_text(example: str | None, list_separator: str) -> str:
    """How a list is written in a CSV cell; with an `example` written as a Python or NumPy
    list, how that one should read."""
    how = (
        f"write a list as its items joined with {list_separator!r} (a{list_separator}b), not as "
        "a Python or NumPy list, which DataFrame.to_csv writes; write_table joins them"
    )
    if example is None:
        return how
    items = ["".join(pair) for pair in QUOTED.findall(example)]
    return f"{example!r} should read {list_separator.join(items)!r}: {how}"


def list_hint(finding: Finding, list_separator: str) -> Finding:
    """A list-cell finding's hint shows its first example rewritten the contract's way."""
    if finding.check == LISTED.format(list_separator) and finding.examples:
        finding.hint = list_hint_text(str(finding.examples[0]), list_separator)
    return finding


def file_check_findings(
    shapes: Mapping[str, FileShape], rows: Mapping[str, int]
) -> tuple[list[Finding], int]:
    """The errors of the checks made on each table's file itself, and how many checks were
    made: every file holds a table (is not a directory without Parquet files); a CSV file is
    comma-separated, its header names each column once, and it holds no NUL character."""
    findings, checks = [], 0
    for table, shape in shapes.items():
        checks += 1 + (3 if shape.csv else 0)
        if shape.empty_directory:
            findings.append(
                finding(
                    table,
                    None,
                    (IS_TABLE, TABLE_CHECK),
                    0,
                    "a directory with no Parquet file in it, not a file",
                    f"point the data set's files.{table} at a Parquet or CSV file (a "
                    "directory is read only as the Parquet parts of one table)",
                    [shape.path.name],
                )
            )
        elif shape.delimiter is not None:
            name = FOREIGN_DELIMITERS[shape.delimiter]
            findings.append(
                finding(
                    table,
                    None,
                    (COMMAS, COMMAS_CHECK),
                    rows.get(table, 0),
                    f"one column named {shape.header[0]!r}",
                    f"the file looks {name}-delimited; write it comma-separated (lists "
                    "inside a cell stay joined with the list separator)",
                    list(shape.first_row[:1]),
                )
            )
        if shape.nul_line is not None:
            line, text = shape.nul_line
            findings.append(
                finding(
                    table,
                    None,
                    (NO_NUL, NUL_CHECK),
                    rows.get(table, 0),
                    f"a NUL character on line {line:,}",
                    "the CSV reader would cut the value short at the NUL without a word: "
                    f"remove it (an id is {ID_WORDS})",
                    [text],
                )
            )
        findings += repeated_column_findings({table: shape.repeated}, rows)
    return findings, checks


def repeated_column_findings(
    repeated: Mapping[str, Mapping[str, int]], rows: Mapping[str, int]
) -> list[Finding]:
    """One error per column a file's header names more than once (`repeated`: table -> column
    -> times named); pandas would read the copies silently as `name.1`, `name.2`."""
    return [
        finding(
            table,
            column,
            (NAMED_ONCE, FILE_CHECK),
            rows.get(table, 0),
            f"{times} times",
            f"keep one column named {column!r}: the copies would be read as {column}.1, "
            "... and dropped",
            [column],
        )
        for table, columns in repeated.items()
        for column, times in columns.items()
    ]


def run_input_gate(
    tables: Mapping[str, pd.DataFrame],
    schemas: Mapping[str, TableSchema],
    settings: GateSettings,
    docs_dir: Path | None = None,
    list_separator: str = "|",
    now: pd.Timestamp | None = None,
    sources: Mapping[str, object] | None = None,
    files: Mapping[str, FileShape] | None = None,
    profile: ProfileSettings | None = None,
    hints: Callable[[Finding], Finding] | None = None,
) -> tuple[GateReport, dict[str, pd.DataFrame]]:
    """Run the input gate over raw tables (read from `sources`, the files the report names;
    `files` says what those files are, see `io.file_shape`); return the report and the
    conformed tables, which the caller may write only if the report succeeded. A table whose
    file is not a comma-separated table is reported once, by its file's finding. With
    `profile`, the profile checks (pipelines/profile_checks.py) join the report; `hints`, if
    given, adds the caller's hint to a finding (a missing column's mapping)."""
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    frames, conformed = input_check_frames(tables, schemas, list_separator, settings.epoch_ms_from)
    suites = input_suites(schemas, settings, now, list_separator)
    found, file_checks = file_check_findings(
        files or {}, {name: len(frame) for name, frame in tables.items()}
    )
    profiled: list[Finding] = []
    if profile is not None:
        profile_errors, profiled, profile_checks = profile_findings(frames, profile)
        found, file_checks = found + profile_errors, file_checks + profile_checks
    log.info(
        "input gate: checking %s against %d expectations",
        ", ".join(f"{name} {len(frame):,} rows" for name, frame in frames.items()),
        file_checks + sum(len(suite) for suite in suites.values()),
    )
    unreadable = {name for name, shape in (files or {}).items() if not shape.holds_table}

    def refine(finding: Finding) -> Finding | None:
        if finding.table in unreadable and finding.expectation not in (TABLE_CHECK, COMMAS_CHECK):
            return None  # its columns are all "missing": the file's finding says why
        finding = list_hint(epoch_hint(finding, settings.epoch_ms_from), list_separator)
        return hints(finding) if hints is not None else finding

    report = run_suites(
        "input",
        frames,
        suites,
        docs_dir,
        settings.examples,
        sources,
        found,
        file_checks=file_checks,
        refine=refine,
        file_warnings=profiled,
    )
    log.info(
        "input gate %s: %d expectations, %d failed, %d warning(s)",
        "passed" if report.success else "FAILED",
        report.expectations,
        len(report.errors),
        len(report.warnings),
    )
    return report, {name: result.frame for name, result in conformed.items()}
