"""The KuaiRand-Pure adapter: the real slice in ../shared (skipped where it is absent), and
its reading errors and imputations on tiny hand-made files."""

from __future__ import annotations

import csv
import gzip
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.data import io
from pipelines.data.contract import EVENT_FLAGS, EVENTS, USERS, VIDEOS, conform, schemas_for
from pipelines.data.kuairand import LOG_FILE, USER_FILE, VIDEO_FILE, load_kuairand, write_kuairand

pytestmark = pytest.mark.kuairand

CONFIG = load_config(overrides=["data.dataset=kuairand"])
DATASET = CONFIG.dataset
FOLDER = (Path(__file__).parents[3] / CONFIG.paths.kuairand).resolve()


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    if not (FOLDER / LOG_FILE).exists():
        pytest.skip(f"KuaiRand-Pure is not at {FOLDER} (paths.kuairand, beside the clone)")
    return load_kuairand(FOLDER, DATASET)


@pytest.fixture(scope="module")
def raw_log(tables) -> list[dict[str, str]]:
    """The log's rows as the csv module reads them: a second opinion independent of pandas."""
    with gzip.open(FOLDER / LOG_FILE, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sizes(tables):
    assert len(tables[EVENTS]) == 94_784  # every row, the 2,750 repeated ones too
    assert len(tables[VIDEOS]) == 7_583
    assert len(tables[USERS]) == 27_285


@pytest.mark.parametrize("name", [VIDEOS, USERS, EVENTS])
def test_tables_are_in_contract_types_already(tables, name):
    schema = schemas_for(DATASET)[name]
    assert list(tables[name].columns) == schema.names
    pd.testing.assert_frame_equal(conform(tables[name], schema).frame, tables[name])


def test_keys_are_unique_and_every_event_refers_to_known_entities(tables):
    videos, users, events = tables[VIDEOS], tables[USERS], tables[EVENTS]
    assert videos["video_id"].is_unique and users["user_id"].is_unique
    assert events["video_id"].isin(videos["video_id"]).all()
    assert events["user_id"].isin(users["user_id"]).all()
    assert events["source_video_id"].dropna().isin(videos["video_id"]).all()


def test_flags_and_positives_match_the_readme(tables):
    events = tables[EVENTS]
    for flag in EVENT_FLAGS:
        assert set(events[flag].unique()) <= {0, 1}, flag
    positives = {flag: int(events[flag].sum()) for flag in EVENT_FLAGS}
    assert positives == {"clicked": 41_503, "liked": 1_625, "shared": 76, "disliked": 65}


def test_play_time_and_timestamps(tables, raw_log):
    events = tables[EVENTS]
    assert (events["play_time_s"] >= 0).all()
    assert events["ts"].dt.tz is not None and str(events["ts"].dt.tz) == "UTC"
    first = raw_log[0]
    assert events["ts"].iat[0] == pd.Timestamp(int(first["time_ms"]), unit="ms", tz="UTC")
    assert events["play_time_s"].iat[0] == int(first["play_time_ms"]) / 1000


def test_events_keep_the_file_order(tables, raw_log):
    # the file is sorted by user then time already; the stable sort leaves it as it is
    events = tables[EVENTS]
    assert events["user_id"].tolist() == [row["user_id"] for row in raw_log]
    assert events["video_id"].tolist() == [row["video_id"] for row in raw_log]


def test_durations_are_positive_and_239_were_imputed(tables):
    videos = tables[VIDEOS]
    assert (videos["duration_s"] > 0).all()
    raw = pd.read_csv(FOLDER / VIDEO_FILE, usecols=["video_id", "video_duration"])
    assert raw["video_duration"].isna().sum() == 239
    known = raw.dropna().set_index(raw.dropna()["video_id"].astype(str))["video_duration"]
    by_id = videos.set_index("video_id")["duration_s"]
    assert (by_id[known.index] == known / 1000).all()


def test_profile_attributes(tables):
    videos = tables[VIDEOS].set_index("video_id")
    assert videos.at["5", "tags"] == ["20", "43"]
    assert videos.at["0", "tags"] == ["39"]
    assert all(isinstance(tags, list) for tags in videos["tags"])
    assert (videos["tags"].map(len) == 0).sum() == 96
    assert videos.at["0", "music_type"] == "9"  # 9.0 in the file
    assert videos["music_type"].isna().sum() == 203
    assert videos.loc["0", ["author_id", "music_id", "upload_type", "video_type"]].tolist() == [
        "7349781",
        "9155697141",
        "LongImport",
        "NORMAL",
    ]
    assert videos.at["0", "published_at"] == pd.Timestamp("2022-04-10", tz="UTC")


def test_user_features(tables):
    users = tables[USERS].set_index("user_id")
    assert users.at["0", "onehot_feat2"] == "29"
    assert users["onehot_feat4"].isna().sum() == 874
    assert users.at["0", "fans_user_num_range"] == "[100,1k)"
    assert users.at["0", "register_days"] == 799.0
    assert users.at["0", "registered_at"] == pd.Timestamp("2022-04-30", tz="UTC") - pd.Timedelta(
        days=799
    )


def test_source_is_the_previous_event_of_the_logs_own_day(tables, raw_log):
    # The log's dates are Beijing dates (its `date` column, rounded to the hour, says so); the
    # adapter's calendar day starts at Beijing midnight too.
    beijing = ZoneInfo(DATASET.timezone)
    expected, previous = [], None
    for row in raw_log:  # already in (user, time) order, as checked above
        day = datetime.fromtimestamp(int(row["time_ms"]) / 1000, tz=beijing).date()
        same = previous is not None and previous[0] == row["user_id"] and previous[1] == day
        expected.append(previous[2] if same else None)
        previous = (row["user_id"], day, row["video_id"])
    assert tables[EVENTS]["source_video_id"].tolist() == expected


def test_source_by_hand(tables):
    # user 16's first rows in the file, Beijing times worked out by hand
    sources = tables[EVENTS]["source_video_id"].iloc[33:43].tolist()
    assert sources == [
        None,  # 04-25 07:07, the user's first event
        "5239",  # 07:19 the same day: the same video again
        None,  # 04-26
        None,  # 04-27 09:32, first of the day
        "7374",  # 04-27 22:10
        "5975",  # an exact repeat of the row above: its twin is its source
        None,  # 04-28
        None,  # 04-29 18:04
        None,  # 04-30 02:55 (still 04-29 in UTC: the Beijing day decides)
        "5244",  # 04-30 02:59
    ]


def test_sources_never_cross_a_day_or_a_user(tables):
    events = tables[EVENTS]
    previous = events.shift(1)
    day = events["ts"].dt.tz_convert(DATASET.timezone).dt.date
    previous_day = day.shift(1)
    has_source = events["source_video_id"].notna()
    assert (events.loc[has_source, "user_id"] == previous.loc[has_source, "user_id"]).all()
    assert (day[has_source] == previous_day[has_source]).all()
    first_of_day = (events["user_id"] != previous["user_id"]) | (day != previous_day)
    assert events.loc[first_of_day, "source_video_id"].isna().all()


def test_write_kuairand_round_trips(tables, tmp_path):
    paths = write_kuairand(FOLDER, DATASET, tmp_path)
    assert {name: path.name for name, path in paths.items()} == {
        VIDEOS: "videos.parquet",
        USERS: "users.parquet",
        EVENTS: "events.parquet",
    }
    schemas = schemas_for(DATASET)
    for name, path in paths.items():
        back = conform(io.read_table(path), schemas[name]).frame
        pd.testing.assert_frame_equal(back, tables[name])


# Tiny hand-made files: no need for the shared folder.

VIDEO_HEADER = (
    "video_id,author_id,video_type,upload_dt,upload_type,video_duration,music_id,music_type,tag"
)
USER_COLUMNS = ["user_id", *DATASET.user_categorical, *DATASET.user_numeric]
LOG_HEADER = "user_id,video_id,time_ms,play_time_ms,is_click,is_like,is_forward,is_hate"


def _tiny_folder(folder: Path, video_rows: list[str], log_header: str = LOG_HEADER) -> Path:
    (folder / VIDEO_FILE).write_text("\n".join([VIDEO_HEADER, *video_rows]) + "\n")
    users = pd.DataFrame([[0] + ["1"] * (len(USER_COLUMNS) - 1)], columns=USER_COLUMNS)
    users.to_csv(folder / USER_FILE, index=False)
    with gzip.open(folder / LOG_FILE, "wt") as handle:
        handle.write(f"{log_header}\n0,1,1651280365845,1500,1,0,0,0\n")
    return folder


def test_missing_durations_take_the_median_of_their_upload_type(tmp_path, caplog):
    folder = _tiny_folder(
        tmp_path,
        [
            '1,7,NORMAL,2022-04-10,Web,10000,5,9.0,"1,2"',
            "2,7,NORMAL,2022-04-10,Web,30000,5,,3",
            "3,7,NORMAL,2022-04-10,Web,,5,,",
            "4,7,NORMAL,2022-04-10,PictureSet,,5,1.0,4",  # no PictureSet has one: overall median
        ],
    )
    videos = load_kuairand(folder, DATASET)[VIDEOS]
    assert videos["duration_s"].tolist() == [10.0, 30.0, 20.0, 20.0]
    assert videos["tags"].tolist() == [["1", "2"], ["3"], [], ["4"]]
    assert videos["music_type"].tolist() == ["9", None, None, "1"]
    assert "2 videos have no video_duration" in caplog.text


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(io.DataFileError, match=VIDEO_FILE):
        load_kuairand(tmp_path, DATASET)


def test_a_missing_column_is_named_with_its_file(tmp_path):
    folder = _tiny_folder(
        tmp_path, ["1,7,NORMAL,2022-04-10,Web,10000,5,9.0,1"], LOG_HEADER.replace("is_hate", "x")
    )
    with pytest.raises(io.DataFileError, match=rf"{LOG_FILE}.*is_hate"):
        load_kuairand(folder, DATASET)
