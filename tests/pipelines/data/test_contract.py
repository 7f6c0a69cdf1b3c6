"""The contract's schemas and `conform`: types cast, bad values kept aside for the gate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.data.contract import (
    EVENTS_SCHEMA,
    ID_PATTERN,
    LIST,
    STR,
    conform,
    malformed_ids,
    parse_timestamps,
    schemas_for,
    to_str,
    to_utc,
    videos_schema,
)


def test_video_schema_follows_the_configured_attributes(config):
    schema = videos_schema({"video_type": "single", "tags": "multi"})
    assert schema.names == ["video_id", "video_type", "tags", "duration_s", "published_at"]
    assert schema.column("video_type").kind == STR and schema.column("tags").kind == LIST
    assert schemas_for(config.dataset)["users"].names[:3] == ["user_id", "age_bucket", "gender"]


def test_conform_casts_csv_strings_and_reports_what_does_not_parse():
    raw = pd.DataFrame(
        {
            "user_id": ["1", "2", "3"],
            "video_id": ["10", "11", "12"],
            "source_video_id": [None, "10", None],
            "ts": ["2026-01-05T10:00:00Z", "2026-01-05 11:00", "yesterday-ish"],
            "clicked": ["1", "0", "one"],
            "play_time_s": ["3.5", "0", "7"],
            "liked": ["0", "0", "0"],
            "shared": ["0", "0", "0"],
            "disliked": ["0", "0", "0"],
            "extra": ["x", "y", "z"],
        }
    )
    result = conform(raw, EVENTS_SCHEMA)
    frame = result.frame
    assert list(frame.columns) == EVENTS_SCHEMA.names  # extra column dropped
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].iloc[1] == pd.Timestamp("2026-01-05 11:00", tz="UTC")  # naive is UTC
    assert pd.isna(frame["ts"].iloc[2]) and result.unparseable["ts"].tolist() == ["yesterday-ish"]
    assert result.unparseable["clicked"].tolist() == ["one"]
    assert frame["play_time_s"].tolist() == [3.5, 0.0, 7.0]
    assert frame["source_video_id"].tolist() == [None, "10", None]


def test_conform_keeps_a_missing_column_missing():
    raw = pd.DataFrame({"user_id": ["1"], "video_id": ["2"]})
    assert list(conform(raw, EVENTS_SCHEMA).frame.columns) == ["user_id", "video_id"]


def test_ids_keep_one_spelling_whatever_the_file_type():
    assert to_str(pd.Series([9.0, np.nan, 12.0])).tolist() == ["9", None, "12"]
    assert to_str(pd.Series([7, 8])).tolist() == ["7", "8"]
    assert to_str(pd.Series(["a", None])).tolist() == ["a", None]


def test_list_attributes_from_lists_arrays_and_separated_strings():
    schema = videos_schema({"tags": "multi"})
    raw = pd.DataFrame(
        {
            "video_id": ["a", "b", "c", "d"],
            "tags": [["x", "y"], np.array(["z"]), "p|q", None],
            "duration_s": [1.0, 2.0, 3.0, 4.0],
            "published_at": pd.to_datetime(["2026-01-01"] * 4, utc=True),
        }
    )
    tags = conform(raw, schema).frame["tags"].tolist()
    assert tags == [["x", "y"], ["z"], ["p", "q"], []]


def test_time_zones_are_read_per_value_and_naive_is_utc():
    # pandas parsing these together applies the first offset to the naive values after it
    raw = pd.Series(
        [
            "2026-01-01T10:00:00+08:00",
            "2026-01-01 10:00:00",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00-0500",
            "2026-01-01T10:00",
            "2026-01-01 10:00:00 UTC",
        ]
    )
    expected = ["02:00", "10:00", "10:00", "15:00", "10:00", "10:00"]
    expected = [pd.Timestamp(f"2026-01-01 {hhmm}", tz="UTC") for hhmm in expected]
    assert to_utc(raw).tolist() == expected


def test_bare_numbers_are_epoch_seconds_or_milliseconds_by_magnitude():
    seconds, unit = parse_timestamps(pd.Series(["828124615", None, "1700000000"]), 1e11)
    assert unit == "s" and seconds[0] == pd.Timestamp("1996-03-29 18:36:55", tz="UTC")
    millis, unit = parse_timestamps(pd.Series([828124615123, 1700000000000]), 1e11)
    assert unit == "ms" and millis[0] == pd.Timestamp("1996-03-29 18:36:55.123", tz="UTC")
    assert str(millis.dtype) == str(seconds.dtype) == "datetime64[ns, UTC]"
    beyond, _ = parse_timestamps(pd.Series([1.7e9, np.inf, 1e300]), 1e11)
    assert beyond.isna().tolist() == [False, True, True]  # unparseable, for the gate to report


def test_bare_numbers_without_a_threshold_or_among_dates_do_not_parse():
    assert to_utc(pd.Series([1700000000])).isna().all()
    mixed = to_utc(pd.Series(["1700000000", "2026-01-01"]), 1e11)
    assert pd.isna(mixed[0]) and mixed[1] == pd.Timestamp("2026-01-01", tz="UTC")


def test_conform_reports_numbers_that_are_not_finite():
    schema = videos_schema({})
    raw = pd.DataFrame(
        {
            "video_id": ["a", "b", "c"],
            "duration_s": ["inf", "-inf", "3"],
            "published_at": ["1700000000"] * 3,
        }
    )
    result = conform(raw, schema, epoch_ms_from=1e11)
    assert result.nonfinite["duration_s"].tolist() == ["inf", "-inf"]
    assert result.unparseable["duration_s"].empty
    assert result.frame["published_at"].notna().all()


def test_ids_match_the_one_pattern_whole():
    ids = pd.Series(["v1", "a:b-c.d_E9", "x" * 128, None, "v|1", "v,1", "v1\n", "v\x001", " v1"])
    bad = ids.where(malformed_ids(ids)).dropna().tolist()
    assert bad == ["v|1", "v,1", "v1\n", "v\x001", " v1"]
    assert malformed_ids(pd.Series(["v1 ", "x" * 129, ""])).all()
    assert ID_PATTERN.startswith("^") and ID_PATTERN.endswith("$")


def test_list_cells_written_as_a_python_or_numpy_list_are_reported():
    schema = videos_schema({"tags": "multi"})
    raw = pd.DataFrame(
        {"tags": ["['a' 'b']", "['a', 'b']", "[]", "a|b", "[remastered]", None], "video_id": "v"}
    )
    conformed = conform(raw, schema)
    assert conformed.unparseable["tags"].tolist() == ["['a' 'b']", "['a', 'b']", "[]"]
    arrays = conform(pd.DataFrame({"tags": [np.array(["a", "b"])]}), schema)
    assert arrays.unparseable["tags"].empty and arrays.frame["tags"][0] == ["a", "b"]
