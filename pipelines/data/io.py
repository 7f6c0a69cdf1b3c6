"""Read and write contract tables as Parquet or CSV, and publish whole folders atomically.

A folder of tables appears complete or not at all: it is written beside, then renamed into place.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SUFFIXES = (".parquet", ".csv", ".csv.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
# Delimiters a CSV file is written with by mistake, by name: the reader wants commas.
FOREIGN_DELIMITERS = {";": "semicolon", "\t": "tab"}


class DataFileError(ValueError):
    """A data file is missing or cannot be read; the message names the file."""


def read_table(path: str | Path) -> pd.DataFrame:
    """A table from Parquet or CSV (optionally gzipped), values as stored: `contract.conform`
    does the typing, so that bad values reach the gate instead of failing here."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    try:
        if path.name.endswith(".parquet") or path.is_dir():
            return pd.read_parquet(path)
        if path.name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as error:  # pyarrow and the CSV parser raise many kinds
        raise DataFileError(f"{path}: cannot be read ({type(error).__name__}: {error})") from error
    raise DataFileError(f"{path}: unknown file type; expected one of {', '.join(SUFFIXES)}")


def repeated_columns(path: str | Path) -> dict[str, int]:
    """Column names a CSV file's header gives more than once, with how many times: `read_table`
    (pandas) would silently rename the copies `name.1`, `name.2`, so the gate asks here. Empty
    for Parquet (not checked: pandas does not write repeated names there) and for a header that
    cannot be read (`read_table` says why)."""
    return file_shape(path).repeated


@dataclass(frozen=True)
class FileShape:
    """What a table's file is, looked at before its values are read, for the input gate: a
    directory holding no Parquet file (read as an empty table), and a CSV file's header as
    written (a column named twice; one column whose name holds another delimiter) and the first
    line holding a NUL character, which the CSV reader would silently cut a value short at."""

    path: Path
    csv: bool = False
    empty_directory: bool = False
    header: tuple[str, ...] = ()
    first_row: tuple[str, ...] = field(default=())
    nul_line: tuple[int, str] | None = None  # (line number, its text) of the first NUL

    @property
    def repeated(self) -> dict[str, int]:
        counts = pd.Series(self.header, dtype=object).value_counts()
        return {str(name): int(times) for name, times in counts.items() if times > 1}

    @property
    def holds_table(self) -> bool:
        """False for a file the gate refuses whole, unread (`read_table` would give an empty
        table, one column, or a parser's message): a directory without Parquet files, a CSV
        file with another delimiter."""
        return not self.empty_directory and self.delimiter is None

    @property
    def delimiter(self) -> str | None:
        """The delimiter the file seems written with when its header reads as one column whose
        name holds a semicolon or a tab; None otherwise."""
        if len(self.header) != 1:
            return None
        found = [d for d in FOREIGN_DELIMITERS if d in self.header[0]]
        return max(found, key=self.header[0].count) if found else None


def file_shape(path: str | Path) -> FileShape:
    """The shape of a table's file (see `FileShape`); a file that cannot be read gets an empty
    header (`read_table` says why)."""
    path = Path(path)
    if path.is_dir():
        parts = any(part.is_file() for part in path.rglob("*.parquet"))
        return FileShape(path, empty_directory=not parts)
    if not path.name.endswith(CSV_SUFFIXES) or not path.exists():
        return FileShape(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as text:
            rows = [tuple(row) for row in itertools.islice(csv.reader(text), 2)]
        nul = first_nul_line(path)
    except (OSError, EOFError, csv.Error):  # read_table reports the file and why
        return FileShape(path, csv=True)
    return FileShape(
        path,
        csv=True,
        header=rows[0] if rows else (),
        first_row=rows[1] if len(rows) > 1 else (),
        nul_line=nul,
    )


def first_nul_line(path: Path, chunk_bytes: int = 1 << 20) -> tuple[int, str] | None:
    """The number and text of a CSV file's first line holding a NUL character, or None; read in
    chunks, as bytes (pandas' CSV parser ends a value at a NUL without saying so)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    line = 1
    with opener(path, "rb") as raw:
        for chunk in iter(lambda: raw.read(chunk_bytes), b""):
            at = chunk.find(b"\0")
            if at < 0:
                line += chunk.count(b"\n")
                continue
            line += chunk.count(b"\n", 0, at)
            break
        else:
            return None
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as text:
        found = next(itertools.islice(text, line - 1, line), "")
    return line, found.rstrip("\r\n")


def write_table(frame: pd.DataFrame, path: str | Path, list_separator: str = "|") -> Path:
    """Write Parquet or CSV by the file's suffix. CSV joins list values (lists, tuples, arrays
    such as Parquet reads back) with `list_separator`, the way `read_table` and
    `contract.conform` read them, never as a Python or NumPy repr."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif path.name.endswith((".csv", ".csv.gz")):
        frame.map(
            lambda v: (
                list_separator.join(map(str, v)) if isinstance(v, list | tuple | np.ndarray) else v
            )
        ).to_csv(path, index=False)
    else:
        raise DataFileError(f"{path}: unknown file type; expected one of {', '.join(SUFFIXES)}")
    return path


def find_table(folder: str | Path, name: str) -> Path:
    """The file holding table `name` in `folder`, whichever supported format it has."""
    for suffix in SUFFIXES:
        candidate = Path(folder) / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    raise DataFileError(
        f"{Path(folder) / name}.parquet: no such file (nor .csv or .csv.gz) for table {name!r}"
    )


@contextmanager
def publish_folder(target: str | Path) -> Iterator[Path]:
    """Yield a scratch folder beside `target`; on success `target` (a symlink) is switched to it
    in one atomic rename, so readers see the old folder or the new one, never a mix. On any
    error the scratch folder is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield scratch
        previous = target.resolve() if target.is_symlink() else None
        if target.exists() and not target.is_symlink():
            shutil.rmtree(target)  # a plain folder from an older layout
        link = target.with_name(f".{target.name}.link-{os.getpid()}")
        link.unlink(missing_ok=True)
        link.symlink_to(scratch.name)
        os.replace(link, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if previous is not None and previous != scratch.resolve():
        shutil.rmtree(previous, ignore_errors=True)


def write_json(payload: Mapping, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str, sort_keys=True) + "\n")
    return path
