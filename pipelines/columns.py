"""A data set's own column names mapped to the contract's (`datasets.<name>.columns`), applied
when the files are read; and the gate's hint for a contract column a file lacks.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from pipelines.config import Config, ConfigError
from pipelines.data.contract import TABLES, schemas_for
from pipelines.gate_report import Finding

log = logging.getLogger(__name__)

COLUMN_PRESENT = "column is present"
# Names other systems give a contract column (compared lower-case, without _ - and spaces).
ALIASES = {
    "user_id": ("user", "uid", "userid", "customerid", "viewerid"),
    "video_id": ("item", "itemid", "movieid", "video", "contentid", "mediaid"),
    "source_video_id": ("sourceitemid", "fromvideoid", "previousvideoid"),
    "ts": ("timestamp", "time", "datetime", "eventtime", "date"),
    "play_time_s": ("playtime", "watchtime", "durationwatched", "playduration"),
    "duration_s": ("duration", "length", "runtime"),
    "published_at": ("published", "publishdate", "releasedate", "uploadtime", "createdat"),
    "registered_at": ("registered", "signupdate", "createdat", "registrationdate"),
    "clicked": ("click", "isclick"),
    "liked": ("like", "islike"),
    "shared": ("share", "isshare"),
    "disliked": ("dislike", "isdislike", "hate"),
}


def check_mapping(config: Config) -> None:
    """Every data set's `columns` names tables of the contract, and per table contract columns
    of that table, each mapped from a distinct file column; else a ConfigError naming the key."""
    for name, dataset in config.datasets.items():
        schemas = schemas_for(dataset)
        for table, mapping in dataset.columns.items():
            where = f"datasets.{name}.columns.{table}"
            if table not in TABLES:
                raise ConfigError(f"{where}: not a table of the contract ({', '.join(TABLES)})")
            for column in mapping:
                if column not in schemas[table].names:
                    raise ConfigError(
                        f"{where}.{column}: not a column of {table} "
                        f"({', '.join(schemas[table].names)}); the key is the contract's name, "
                        "the value the file's"
                    )
            sources = pd.Series(list(mapping.values()), dtype=object)
            repeated = sorted(set(sources[sources.duplicated()]))
            if repeated:
                raise ConfigError(f"{where}: {repeated} mapped to more than one column")


def apply_mapping(
    tables: Mapping[str, pd.DataFrame], columns: Mapping[str, Mapping[str, str]]
) -> dict[str, pd.DataFrame]:
    """Each table with its mapped columns renamed to the contract's names. A mapped column the
    file lacks is left out (the gate names the contract column as missing, with the mapping); a
    file that has both the mapped column and one already named like the contract's loses the
    latter, with a warning."""
    renamed = {}
    for table, frame in tables.items():
        absent = {c: s for c, s in (columns.get(table) or {}).items() if s not in frame.columns}
        for column, source in absent.items():
            if column in frame.columns:  # else the gate names the column as missing
                log.warning(
                    "%s: no column %r to map to %s; the file's own %r is read",
                    table,
                    source,
                    column,
                    column,
                )
        mapping = {
            source: column
            for column, source in (columns.get(table) or {}).items()
            if source in frame.columns and source != column
        }
        clash = [column for column in mapping.values() if column in frame.columns]
        if clash:
            log.warning(
                "%s: column(s) %s are replaced by the ones datasets.*.columns maps to them",
                table,
                clash,
            )
            frame = frame.drop(columns=clash)
        renamed[table] = frame.rename(columns=mapping) if mapping else frame
    return renamed


def missing_column_hint(
    finding: Finding,
    present: Mapping[str, Sequence[str]],
    dataset: str,
    columns: Mapping[str, Mapping[str, str]],
) -> Finding:
    """A "column is present" failure gets the columns the file has (`present`, as read) and a
    hint: the mapping syntax with the file's likeliest name for the column, or, where the
    column is mapped already, that the mapped name is not in the file."""
    if finding.check != COLUMN_PRESENT or not finding.column or finding.table not in present:
        return finding
    table, column = finding.table, finding.column
    has = list(present[table])
    finding.observed = f"missing; the file has {', '.join(map(str, has)) or 'no columns'}"
    mapped = (columns.get(table) or {}).get(column)
    if mapped is not None:
        finding.hint = (
            f"datasets.{dataset}.columns.{table} maps {column} to {mapped!r}, which the file "
            "does not have: map it to one of the file's columns"
        )
        return finding
    used = set((columns.get(table) or {}).values())
    guess = likely_source(column, [c for c in has if c not in used]) or "<its name in the file>"
    finding.hint = (
        f"name it {column!r} in the file, or map the file's name to it in the configuration: "
        f"datasets.{dataset}.columns: {{{table}: {{{column}: {guess}}}}}"
    )
    return finding


def likely_source(column: str, candidates: Sequence[str]) -> str | None:
    """The candidate most likely to be `column` under another name: the same name written
    otherwise (userId for user_id), a usual alias (timestamp for ts), or a close spelling."""
    by_key = {_key(c): c for c in map(str, candidates)}
    for key in (_key(column), *ALIASES.get(column, ())):
        if key in by_key:
            return by_key[key]
    close = difflib.get_close_matches(_key(column), list(by_key), n=1)
    return by_key[close[0]] if close else None


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()
