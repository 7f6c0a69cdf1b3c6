"""The data contract of SPEC.md as explicit schemas: videos, users and events.

`conform` turns a frame read from any file into the contract's types without ever raising on bad
values: what cannot be parsed becomes null and is returned beside, for the input gate to report,
as are numbers that are not finite and list cells written as a Python or NumPy list. Timestamps
are parsed value by value as to their zone (a naive one is UTC, whatever its neighbours carry);
a column of bare numbers is epoch time when an `epoch_ms_from` threshold is given (seconds below
it, milliseconds from it on). `ID_PATTERN` is the one form of an id, shared with the HTTP API.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.config import DatasetConfig

log = logging.getLogger(__name__)

VIDEOS, USERS, EVENTS = "videos", "users", "events"
TABLES = (VIDEOS, USERS, EVENTS)

# Column kinds: how a value is stored once it has been conformed.
ID = "id"  # str, the key of an entity
STR = "str"  # str, a single-valued categorical attribute
LIST = "list"  # list[str], a multi-valued categorical attribute
FLOAT = "float"
INT = "int"
FLAG = "flag"  # 0/1
TIMESTAMP = "timestamp"  # timezone-aware UTC

EVENT_FLAGS = ("clicked", "liked", "shared", "disliked")
EVENT_KEY = ("user_id", "video_id", "ts")

# A value that is a bare number (an epoch time when it stands in a timestamp column).
NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
# A date-time that names its zone: a time part, then Z or an offset (+08:00, -0500, +08).
ZONED = r"(?i)^.*\d:\d{2}.*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
EPOCH_SECONDS, EPOCH_MILLISECONDS = "s", "ms"
EPOCH_WORDS = {EPOCH_SECONDS: "epoch seconds", EPOCH_MILLISECONDS: "epoch milliseconds"}

# A well-formed id (user_id, video_id, source_video_id), the one pattern of the contract: the
# input gate refuses any other id, and the HTTP API refuses it in a path with 422. Match it
# against the whole value (`re.fullmatch`; pydantic's `pattern` anchors to the whole value too),
# so that a trailing newline does not slip through `$`.
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
ID_WORDS = "1 to 128 letters, digits and _ . : -"
# A list cell written as a Python list (['x', 'y']) or a NumPy array (['x' 'y']), which is what
# `DataFrame.to_csv` writes for a list column: not the contract's items joined with a separator.
LIST_REPR = r"(?s)\s*\[\s*\]\s*|\s*\[\s*['\"].*['\"]\s*\]\s*"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable: bool = False


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def of_kind(self, *kinds: str) -> list[str]:
        return [column.name for column in self.columns if column.kind in kinds]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


def videos_schema(attributes: Mapping[str, str]) -> TableSchema:
    """`attributes` maps each profile column to `single` (one string) or `multi` (a list)."""
    profile = tuple(
        Column(name, LIST if kind == "multi" else STR, nullable=kind != "multi")
        for name, kind in attributes.items()
    )
    return TableSchema(
        VIDEOS,
        (
            Column("video_id", ID),
            *profile,
            Column("duration_s", FLOAT),
            Column("published_at", TIMESTAMP),
        ),
        key=("video_id",),
    )


def users_schema(categorical: Iterable[str], numeric: Iterable[str]) -> TableSchema:
    """User features: categorical ones as strings, numeric ones as floats; both may be null."""
    return TableSchema(
        USERS,
        (
            Column("user_id", ID),
            *(Column(name, STR, nullable=True) for name in categorical),
            *(Column(name, FLOAT, nullable=True) for name in numeric),
            Column("registered_at", TIMESTAMP),
        ),
        key=("user_id",),
    )


EVENTS_SCHEMA = TableSchema(
    EVENTS,
    (
        Column("user_id", ID),
        Column("video_id", ID),
        Column("source_video_id", ID, nullable=True),
        Column("ts", TIMESTAMP),
        Column("clicked", FLAG),
        Column("play_time_s", FLOAT),
        Column("liked", FLAG),
        Column("shared", FLAG),
        Column("disliked", FLAG),
    ),
    key=EVENT_KEY,
)


def schemas_for(dataset: DatasetConfig) -> dict[str, TableSchema]:
    """The three schemas for a data set's configuration."""
    return {
        VIDEOS: videos_schema(dataset.video_attributes),
        USERS: users_schema(dataset.user_categorical, dataset.user_numeric),
        EVENTS: EVENTS_SCHEMA,
    }


@dataclass
class Conformed:
    """A table in contract types, plus the raw values that did not parse (for a list column: a
    cell written as a Python or NumPy list), and the raw values of numbers that are not finite
    (inf, -inf), per column."""

    frame: pd.DataFrame
    unparseable: dict[str, pd.Series]
    nonfinite: dict[str, pd.Series] = field(default_factory=dict)


def conform(
    frame: pd.DataFrame,
    schema: TableSchema,
    list_separator: str = "|",
    epoch_ms_from: float | None = None,
) -> Conformed:
    """Cast the schema's columns to contract types; extra columns are dropped, missing ones kept
    missing (the gate names them). Values that do not parse become null and are reported;
    numbers that are not finite are kept and reported. With `epoch_ms_from`, a timestamp column
    of bare numbers is read as epoch time (see `parse_timestamps`), and the unit is logged."""
    out = pd.DataFrame(index=frame.index)
    unparseable: dict[str, pd.Series] = {}
    nonfinite: dict[str, pd.Series] = {}
    for column in schema.columns:
        if column.name not in frame.columns:
            continue
        raw = frame[column.name]
        if column.kind in (ID, STR):
            out[column.name] = to_str(raw)
        elif column.kind == LIST:
            out[column.name] = to_str_lists(raw, list_separator)
            unparseable[column.name] = raw[list_reprs(raw)]
        elif column.kind == TIMESTAMP:
            parsed, unit = parse_timestamps(raw, epoch_ms_from)
            if unit is not None:
                _log_epoch(f"{schema.name}.{column.name}", raw, parsed, unit)
            out[column.name] = parsed
            unparseable[column.name] = raw[parsed.isna() & raw.notna()]
        else:
            parsed = pd.to_numeric(raw, errors="coerce")
            out[column.name] = parsed.astype("float64" if column.kind == FLOAT else parsed.dtype)
            unparseable[column.name] = raw[parsed.isna() & raw.notna()]
            nonfinite[column.name] = raw[np.isinf(parsed.astype("float64"))]
    return Conformed(
        out.reset_index(drop=True),
        {name: values.reset_index(drop=True) for name, values in unparseable.items()},
        {name: values.reset_index(drop=True) for name, values in nonfinite.items()},
    )


def _log_epoch(where: str, raw: pd.Series, parsed: pd.Series, unit: str) -> None:
    known = parsed.notna()
    example = f"{raw[known].iloc[0]} -> {parsed[known].iloc[0].isoformat()}" if known.any() else ""
    log.info("%s: bare numbers, read as %s (e.g. %s)", where, EPOCH_WORDS[unit], example)


def to_str(values: pd.Series) -> pd.Series:
    """Ids and categorical values as Python strings; nulls stay null. Integral floats (a CSV
    column with missing values reads 9 as 9.0) lose the '.0' so that ids keep one spelling."""
    if pd.api.types.is_float_dtype(values):
        as_int = values.dropna()
        if (as_int == np.floor(as_int)).all():
            return values.map(lambda v: None if pd.isna(v) else str(int(v))).astype(object)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    return values.map(lambda v: None if _is_missing(v) else str(v)).astype(object)


def to_str_lists(values: pd.Series, separator: str = "|") -> pd.Series:
    """Multi-valued attributes as lists of strings: a list or array stays one, a string is split
    on `separator`, a missing value is the empty list."""

    def one(value: object) -> list[str]:
        if isinstance(value, list | tuple | np.ndarray):
            return [str(item) for item in value if not _is_missing(item)]
        if _is_missing(value):
            return []
        return [part for part in str(value).split(separator) if part != ""]

    return values.map(one).astype(object)


def list_reprs(values: pd.Series) -> pd.Series:
    """Where a cell is text written as a Python or NumPy list (`['x' 'y']`, `['x', 'y']`, `[]`)
    rather than the items joined with the list separator; a real list or array is not text."""
    text = values.map(lambda v: v if isinstance(v, str) else None).astype("string")
    return text.str.fullmatch(LIST_REPR).fillna(False).astype(bool)


def malformed_ids(values: pd.Series) -> pd.Series:
    """Where an id (as text, see `to_str`) is present but does not match `ID_PATTERN`."""
    text = values.astype("string")
    return (text.notna() & ~text.str.fullmatch(ID_PATTERN).fillna(False)).astype(bool)


def to_utc(values: pd.Series, epoch_ms_from: float | None = None) -> pd.Series:
    """Timestamps as timezone-aware UTC (see `parse_timestamps`)."""
    return parse_timestamps(values, epoch_ms_from)[0]


def parse_timestamps(
    values: pd.Series, epoch_ms_from: float | None = None
) -> tuple[pd.Series, str | None]:
    """Timestamps as timezone-aware UTC, and the epoch unit if the column was read as epoch
    numbers. Each value keeps its own zone: one with an offset or Z is converted, a naive one is
    taken as UTC. Unparseable values become NaT. A column of bare numbers is epoch time when
    `epoch_ms_from` is given: milliseconds if its median magnitude is at least that, else
    seconds; without it (or where the column mixes numbers and dates) numbers become NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC"), None
    if pd.api.types.is_datetime64_dtype(values):
        return values.dt.tz_localize("UTC"), None
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return _from_epoch(values.astype("float64"), epoch_ms_from)
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    numeric = text[present].str.fullmatch(NUMBER)
    if present.any() and numeric.all():
        return _from_epoch(pd.to_numeric(text.where(present), errors="coerce"), epoch_ms_from)
    return _from_iso(text.where(present)), None


def epoch_unit(numbers: pd.Series, epoch_ms_from: float) -> str:
    """Seconds or milliseconds, by the median magnitude of the numbers."""
    median = numbers.abs().median()
    return EPOCH_MILLISECONDS if median >= epoch_ms_from else EPOCH_SECONDS


def _from_epoch(numbers: pd.Series, epoch_ms_from: float | None) -> tuple[pd.Series, str | None]:
    if epoch_ms_from is None or numbers.isna().all():
        return pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[ns, UTC]"), None
    unit = epoch_unit(numbers, epoch_ms_from)
    span = pd.Timestamp.max.value / pd.Timedelta(1, unit=unit).value  # what a timestamp holds
    numbers = numbers.astype("float64").where(numbers.abs() < span)  # inf and beyond: NaT
    parsed = pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")
    return parsed.astype("datetime64[ns, UTC]"), unit


def _from_iso(text: pd.Series) -> pd.Series:
    """ISO 8601 parses vectorized, zoned and naive values apart (pandas applies the first
    value's offset to naive ones when they are parsed together); only what that misses is tried
    value by value."""
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    zoned = text.str.match(ZONED).fillna(False).astype(bool)
    naive = text.notna() & ~zoned
    if zoned.any():
        parsed[zoned] = pd.to_datetime(text[zoned], utc=True, errors="coerce", format="ISO8601")
    if naive.any():
        local = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        parsed[naive] = local.dt.tz_localize("UTC")
    retry = parsed.isna() & text.notna()
    if retry.any():
        stamps = [_one_utc(value) for value in text[retry]]
        parsed[retry] = pd.Series(stamps, index=text[retry].index, dtype=parsed.dtype)
    return parsed


def _one_utc(value: str) -> pd.Timestamp:
    """One free-form date-time as UTC (naive is UTC); NaT if it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateutil's guesses; the gate reports failures
            stamp = pd.Timestamp(value)
    except (ValueError, OverflowError, TypeError):
        return pd.NaT
    if stamp is pd.NaT:
        return pd.NaT
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return value is pd.NaT or value is pd.NA
