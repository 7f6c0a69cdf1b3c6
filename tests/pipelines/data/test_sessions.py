"""Deriving source_video_id from each user's previous event within a session window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.data.sessions import derive_source_video_ids, fill_source_video_ids


def _events(rows: list[tuple[str, str, str]], index: list | None = None) -> pd.DataFrame:
    """(user_id, video_id, ISO timestamp) rows as an events frame."""
    frame = pd.DataFrame(rows, columns=["user_id", "video_id", "ts"], index=index)
    # errors="coerce": a row may hold an unparseable time on purpose
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce")
    return frame


def _reference(events: pd.DataFrame, window: str) -> list[object]:
    """A plain loop over each user's events, as a second opinion on the vectorized version."""
    result: dict[object, object] = {}
    users, stamps = events["user_id"].tolist(), events["ts"].tolist()
    ordered = sorted(range(len(events)), key=lambda i: (users[i], stamps[i]))  # stable
    previous: tuple[object, pd.Timestamp, object] | None = None
    for i in ordered:
        user, ts, video = events["user_id"].iat[i], events["ts"].iat[i], events["video_id"].iat[i]
        source = None
        if previous is not None and previous[0] == user:
            if window == "calendar_day":
                same = previous[1].date() == ts.date()
            else:
                same = ts - previous[1] <= pd.Timedelta(window)
            source = previous[2] if same else None
        result[i] = source
        previous = (user, ts, video)
    return [result[i] for i in range(len(events))]


def test_first_event_of_a_user_has_no_source():
    events = _events([("u1", "a", "2026-01-05 10:00"), ("u1", "b", "2026-01-05 10:05")])
    assert derive_source_video_ids(events, "30min").tolist() == [None, "a"]


def test_a_gap_longer_than_the_window_starts_a_new_session():
    events = _events(
        [
            ("u1", "a", "2026-01-05 10:00"),
            ("u1", "b", "2026-01-05 10:30"),  # exactly 30 minutes: same session
            ("u1", "c", "2026-01-05 11:00:01"),  # 30 minutes and a second: a new one
            ("u1", "d", "2026-01-05 11:10"),
        ]
    )
    assert derive_source_video_ids(events, "30min").tolist() == [None, "a", None, "c"]


def test_calendar_day_links_the_same_utc_date_only():
    events = _events(
        [
            ("u1", "a", "2026-01-05 00:10"),
            ("u1", "b", "2026-01-05 23:50"),  # 23h40 later, same date
            ("u1", "c", "2026-01-06 00:05"),  # 15 minutes later, next date
            ("u1", "d", "2026-01-06 09:00"),
        ]
    )
    assert derive_source_video_ids(events, "calendar_day").tolist() == [None, "a", None, "c"]
    assert derive_source_video_ids(events, "30min").tolist() == [None, None, "b", None]


def test_calendar_day_is_the_utc_date_whatever_the_input_timezone():
    events = _events([("u1", "a", "2026-01-05 23:00"), ("u1", "b", "2026-01-06 01:00")])
    events["ts"] = events["ts"].dt.tz_convert("Asia/Shanghai")  # both on Jan 6 there
    assert derive_source_video_ids(events, "calendar_day").tolist() == [None, None]


def test_interleaved_users_do_not_share_sessions():
    events = _events(
        [
            ("u1", "a", "2026-01-05 10:00"),
            ("u2", "x", "2026-01-05 10:01"),
            ("u1", "b", "2026-01-05 10:02"),
            ("u2", "y", "2026-01-05 10:03"),
            ("u3", "z", "2026-01-05 10:04"),
        ]
    )
    assert derive_source_video_ids(events, "30min").tolist() == [None, None, "a", "x", None]


def test_unsorted_input_is_ordered_by_time_and_the_result_follows_the_input_index():
    events = _events(
        [
            ("u1", "c", "2026-01-05 10:20"),
            ("u1", "a", "2026-01-05 10:00"),
            ("u1", "b", "2026-01-05 10:10"),
        ],
        index=[30, 10, 20],
    )
    sources = derive_source_video_ids(events, "30min")
    assert sources.index.tolist() == [30, 10, 20]
    assert sources.to_dict() == {30: "b", 10: None, 20: "a"}
    assert sources.name == "source_video_id"


def test_equal_timestamps_keep_their_input_order():
    events = _events(
        [
            ("u1", "a", "2026-01-05 10:00"),
            ("u1", "c", "2026-01-05 10:05"),
            ("u1", "b", "2026-01-05 10:00"),  # ties with "a" and comes after it in the input
        ]
    )
    assert derive_source_video_ids(events, "30min").tolist() == [None, "b", "a"]


def test_a_repeated_row_gets_its_twin_as_source():
    events = _events([("u1", "a", "2026-01-05 10:00"), ("u1", "a", "2026-01-05 10:00")])
    assert derive_source_video_ids(events, "calendar_day").tolist() == [None, "a"]


def test_missing_timestamps_neither_get_nor_give_a_source():
    events = _events(
        [
            ("u1", "a", "2026-01-05 10:00"),
            ("u1", "b", "2026-01-05 10:05"),
            ("u1", "c", "not a time"),
        ]
    )
    assert derive_source_video_ids(events, "30min").tolist() == [None, "a", None]


def test_empty_events_give_an_empty_series():
    events = _events([])
    sources = derive_source_video_ids(events, "calendar_day")
    assert sources.empty and sources.dtype == object


@pytest.mark.parametrize("window", ["bogus", "1M", "-5min", "", "calendar day"])
def test_an_unparseable_window_is_named(window):
    events = _events([("u1", "a", "2026-01-05 10:00")])
    with pytest.raises(ValueError, match=repr(window).replace("(", r"\(")):
        derive_source_video_ids(events, window)


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match="ts"):
        derive_source_video_ids(pd.DataFrame({"user_id": ["u"], "video_id": ["v"]}), "30min")


@pytest.mark.parametrize("window", ["30min", "2h", "calendar_day"])
def test_matches_a_plain_loop_on_random_logs(window):
    rng = np.random.default_rng(7)
    n = 3000
    start = pd.Timestamp("2026-01-05", tz="UTC").value
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, 60, n).astype(str),
            "video_id": rng.integers(0, 200, n).astype(str),
            # minute resolution over four days: many ties, gaps of every size, midnight crossings
            "ts": pd.to_datetime(start + rng.integers(0, 4 * 24 * 60, n) * 60 * 10**9, utc=True),
        }
    )
    expected = _reference(events, window)
    assert derive_source_video_ids(events, window).tolist() == expected
    # the same log already sorted by user and time takes the no-sort path: same answer per row
    ordered = events.iloc[np.lexsort((events["ts"].to_numpy(), events["user_id"].to_numpy()))]
    assert derive_source_video_ids(ordered, window).to_dict() == dict(enumerate(expected))


def test_fill_derives_an_absent_column_and_leaves_the_input_alone():
    events = _events([("u1", "a", "2026-01-05 10:00"), ("u1", "b", "2026-01-05 10:05")])
    filled = fill_source_video_ids(events, "30min")
    assert filled["source_video_id"].tolist() == [None, "a"]
    assert "source_video_id" not in events.columns


def test_fill_derives_an_all_null_column():
    events = _events([("u1", "a", "2026-01-05 10:00"), ("u1", "b", "2026-01-05 10:05")])
    events["source_video_id"] = None
    assert fill_source_video_ids(events, "30min")["source_video_id"].tolist() == [None, "a"]


def test_fill_keeps_a_given_column_with_its_nulls():
    events = _events([("u1", "a", "2026-01-05 10:00"), ("u1", "b", "2026-01-05 10:05")])
    events["source_video_id"] = ["z", None]  # the second event was a direct visit
    filled = fill_source_video_ids(events, "30min")
    assert filled["source_video_id"].tolist() == ["z", None]
    assert filled is not events


def test_calendar_day_starts_at_local_midnight():
    # 23:30 UTC on the 1st and 00:30 UTC on the 2nd: two UTC days, one Beijing day (UTC+8).
    events = _events(
        [
            ("u", "a", "2026-01-01T23:30:00Z"),
            ("u", "b", "2026-01-02T00:30:00Z"),
            ("u", "c", "2026-01-02T16:30:00Z"),
        ]
    )
    assert derive_source_video_ids(events, "calendar_day").tolist() == [None, None, "b"]
    beijing = derive_source_video_ids(events, "calendar_day", "Asia/Shanghai")
    assert beijing.tolist() == [None, "a", None]  # 16:30 UTC is 00:30 the next Beijing day
    with pytest.raises(ValueError, match="timezone 'Mars/Olympus'"):
        derive_source_video_ids(events, "calendar_day", "Mars/Olympus")
