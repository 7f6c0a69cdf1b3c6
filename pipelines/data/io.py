"""Read and write contract tables as Parquet or CSV, and publish whole folders atomically.

A folder of tables appears complete or not at all: it is written beside, then renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

SUFFIXES = (".parquet", ".csv", ".csv.gz")


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
    path = Path(path)
    if not path.name.endswith((".csv", ".csv.gz")):
        return {}
    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    except Exception:  # read_table reports the file and why
        return {}
    counts = header.iloc[0].value_counts() if len(header) else pd.Series(dtype=int)
    return {str(name): int(times) for name, times in counts.items() if times > 1}


def write_table(frame: pd.DataFrame, path: str | Path, list_separator: str = "|") -> Path:
    """Write Parquet or CSV by the file's suffix; CSV joins list values with `list_separator`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif path.name.endswith((".csv", ".csv.gz")):
        frame.map(
            lambda v: list_separator.join(map(str, v)) if isinstance(v, list | tuple) else v
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
