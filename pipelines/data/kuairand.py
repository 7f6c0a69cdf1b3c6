"""Bring the KuaiRand-Pure slice (`paths.kuairand`, read where it lies) to the data contract:
videos, users and events, with `source_video_id` derived from each user's previous event.

Data: KuaiRand-Pure, by Chongming Gao, Shijun Li, Yuan Zhang, Jiawei Chen, Biao Li, Wenqiang Lei,
Peng Jiang and Xiangnan He, "KuaiRand: An Unbiased Sequential Recommendation Dataset with Randomly
Exposed Videos", CIKM 2022 (kuairand.com); licensed CC BY-SA 4.0. Tables derived from it and
redistributed carry this attribution and the same license.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import DatasetConfig
from pipelines.data import io
from pipelines.data.contract import EVENTS, USERS, VIDEOS, TableSchema, conform, schemas_for
from pipelines.data.sessions import derive_source_video_ids

VIDEO_FILE = "video_features_basic_pure.csv"
USER_FILE = "user_features_pure.csv"
LOG_FILE = "log_standard_4_25_to_4_30_pure.csv.gz"

# Log column -> contract column; the flags are 0/1 in both.
EVENT_COLUMNS = {
    "is_click": "clicked",
    "is_like": "liked",
    "is_forward": "shared",
    "is_hate": "disliked",
}

log = logging.getLogger(__name__)


def load_kuairand(folder: Path, dataset: DatasetConfig) -> dict[str, pd.DataFrame]:
    """The three contract tables {videos, users, events} from the KuaiRand-Pure files in
    `folder`; `dataset` is `datasets.kuairand` of the configuration. Every log row is kept,
    repeated rows too (the input gate tolerates them)."""
    folder = Path(folder)
    schemas = schemas_for(dataset)
    videos, imputed = _videos(folder, dataset)
    events = _events(folder, dataset.source_window, dataset.timezone)
    users = _users(folder, dataset, last_day=events["ts"].max().floor("D"))
    tables = {
        VIDEOS: _conformed(videos, schemas[VIDEOS], VIDEO_FILE),
        USERS: _conformed(users, schemas[USERS], USER_FILE),
        EVENTS: _conformed(events, schemas[EVENTS], LOG_FILE),
    }
    log.info(
        "KuaiRand-Pure from %s: %d videos (%d durations imputed), %d users (%d with events), "
        "%d events from %s to %s (%d with a source video, window %s)",
        folder,
        len(tables[VIDEOS]),
        imputed,
        len(tables[USERS]),
        tables[EVENTS]["user_id"].nunique(),
        len(tables[EVENTS]),
        tables[EVENTS]["ts"].min(),
        tables[EVENTS]["ts"].max(),
        int(tables[EVENTS]["source_video_id"].notna().sum()),
        dataset.source_window,
    )
    return tables


def write_kuairand(folder_in: Path, dataset: DatasetConfig, folder_out: Path) -> dict[str, Path]:
    """Load the slice and write videos.parquet, users.parquet and events.parquet to
    `folder_out`; returns the path of each table."""
    tables = load_kuairand(folder_in, dataset)
    return {
        name: io.write_table(frame, Path(folder_out) / f"{name}.parquet")
        for name, frame in tables.items()
    }


def _videos(folder: Path, dataset: DatasetConfig) -> tuple[pd.DataFrame, int]:
    attributes = [name for name in dataset.video_attributes if name != "tags"]
    raw = _read_csv(
        folder / VIDEO_FILE,
        ["video_id", *attributes, "tag", "upload_dt", "video_duration", "upload_type"],
    )
    videos = raw[["video_id", *attributes]].copy()
    videos["tags"] = raw["tag"].map(_tag_list)
    videos["duration_s"], imputed = _durations_s(raw)
    videos["published_at"] = pd.to_datetime(raw["upload_dt"], utc=True, errors="coerce")
    return videos, imputed


def _tag_list(value: object) -> list[str]:
    """ "20,43" -> ["20", "43"]; a video without a tag has none."""
    if pd.isna(value):
        return []
    return [tag.strip() for tag in str(value).split(",") if tag.strip()]


def _durations_s(raw: pd.DataFrame) -> tuple[pd.Series, int]:
    """Seconds from milliseconds; a missing (or non-positive) duration takes the median of the
    videos with the same upload_type, or the overall median where that type has none. The
    log cannot fill them: its duration_ms is the video's, 0 for these videos."""
    duration_ms = pd.to_numeric(raw["video_duration"], errors="coerce").where(lambda d: d > 0)
    missing = duration_ms.isna()
    if missing.any():
        by_type = duration_ms.groupby(raw["upload_type"], dropna=False).transform("median")
        filled = by_type.fillna(duration_ms.median())
        log.warning(
            "%s: %d videos have no video_duration; imputed the median of their upload_type "
            "(%d of them from the overall median: their type has no duration at all), by type: %s",
            VIDEO_FILE,
            int(missing.sum()),
            int((missing & by_type.isna()).sum()),
            raw.loc[missing, "upload_type"].value_counts(dropna=False).to_dict(),
        )
        duration_ms = duration_ms.fillna(filled)
    return duration_ms / 1000.0, int(missing.sum())


def _users(folder: Path, dataset: DatasetConfig, last_day: pd.Timestamp) -> pd.DataFrame:
    """User features; `registered_at` is 00:00 UTC of the log's last day (2022-04-30) minus
    `register_days` days, as register_days is counted at the end of the logging period."""
    columns = ["user_id", *dataset.user_categorical, *dataset.user_numeric]
    raw = _read_csv(folder / USER_FILE, [*columns, "register_days"])
    users = raw[columns].copy()
    days = pd.to_numeric(raw["register_days"], errors="coerce")
    users["registered_at"] = last_day - pd.to_timedelta(days, unit="D")
    return users


def _events(folder: Path, source_window: str, timezone: str) -> pd.DataFrame:
    raw = _read_csv(
        folder / LOG_FILE, ["user_id", "video_id", "time_ms", "play_time_ms", *EVENT_COLUMNS]
    )
    # By user then time, a stable sort: the file's own order, repeated rows kept in place.
    raw = raw.iloc[np.lexsort((raw["time_ms"].to_numpy(), raw["user_id"].to_numpy()))]
    events = pd.DataFrame(
        {
            "user_id": raw["user_id"],
            "video_id": raw["video_id"],
            "ts": pd.to_datetime(raw["time_ms"], unit="ms", utc=True),
            **{name: raw[column] for column, name in EVENT_COLUMNS.items()},
            "play_time_s": raw["play_time_ms"] / 1000.0,
        }
    ).reset_index(drop=True)
    events["source_video_id"] = derive_source_video_ids(events, source_window, timezone)
    return events


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """The named columns of a KuaiRand CSV with pandas' own types (ids as integers, a float
    where a column has gaps); a missing file or column raises DataFileError naming both."""
    columns = list(dict.fromkeys(columns))
    if not path.exists():
        raise io.DataFileError(f"{path}: no such file (is paths.kuairand right?)")
    try:
        header = pd.read_csv(path, nrows=0).columns
        absent = [name for name in columns if name not in header]
        if absent:
            raise io.DataFileError(f"{path}: missing column(s) {absent}")
        return pd.read_csv(path, usecols=columns)[columns]
    except io.DataFileError:
        raise
    except Exception as error:  # the CSV parser and gzip raise many kinds
        message = f"{path}: cannot be read ({type(error).__name__}: {error})"
        raise io.DataFileError(message) from error


def _conformed(frame: pd.DataFrame, schema: TableSchema, source: str) -> pd.DataFrame:
    """The frame in contract types; values that did not parse are nulls, and are reported."""
    result = conform(frame, schema)
    for column, values in result.unparseable.items():
        if len(values):
            log.warning(
                "%s: %d values of %s did not parse, e.g. %s",
                source,
                len(values),
                column,
                values.head(3).tolist(),
            )
    return result.frame
