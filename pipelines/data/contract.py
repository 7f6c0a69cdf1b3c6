"""The data contract of SPEC.md as explicit schemas: videos, users and events.

`conform` turns a frame read from any file into the contract's types without ever raising on bad
values: what cannot be parsed becomes null and is returned beside, for the input gate to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.config import DatasetConfig

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
    """A table in contract types, plus the raw values that did not parse, per column."""

    frame: pd.DataFrame
    unparseable: dict[str, pd.Series]


def conform(frame: pd.DataFrame, schema: TableSchema, list_separator: str = "|") -> Conformed:
    """Cast the schema's columns to contract types; extra columns are dropped, missing ones kept
    missing (the gate names them). Values that do not parse become null and are reported."""
    out = pd.DataFrame(index=frame.index)
    unparseable: dict[str, pd.Series] = {}
    for column in schema.columns:
        if column.name not in frame.columns:
            continue
        raw = frame[column.name]
        if column.kind in (ID, STR):
            out[column.name] = to_str(raw)
        elif column.kind == LIST:
            out[column.name] = to_str_lists(raw, list_separator)
        elif column.kind == TIMESTAMP:
            parsed = to_utc(raw)
            out[column.name] = parsed
            unparseable[column.name] = raw[parsed.isna() & raw.notna()]
        else:
            parsed = pd.to_numeric(raw, errors="coerce")
            out[column.name] = parsed.astype("float64" if column.kind == FLOAT else parsed.dtype)
            unparseable[column.name] = raw[parsed.isna() & raw.notna()]
    return Conformed(
        out.reset_index(drop=True),
        {name: values.reset_index(drop=True) for name, values in unparseable.items()},
    )


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


def to_utc(values: pd.Series) -> pd.Series:
    """Timestamps as timezone-aware UTC; naive ones are taken as UTC; unparseable ones, and bare
    numbers, become NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values):
        return values.dt.tz_localize("UTC")
    if pd.api.types.is_numeric_dtype(values):
        # Epoch numbers are ambiguous (seconds? milliseconds?): the gate reports them instead.
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    # ISO 8601 parses vectorized; only what it misses is tried element by element.
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    retry = parsed.isna() & values.notna()
    if retry.any():
        parsed[retry] = pd.to_datetime(values[retry], utc=True, errors="coerce", format="mixed")
    return parsed


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return value is pd.NaT or value is pd.NA
