"""Derive `source_video_id` for logs that lack it: the video a user was watching when an event
happened is taken to be the video of that user's previous event within a session window.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

CALENDAR_DAY = "calendar_day"
SOURCE_COLUMN = "source_video_id"
_NS_PER_DAY = 86_400 * 10**9

log = logging.getLogger(__name__)


def derive_source_video_ids(events: pd.DataFrame, window: str, timezone: str = "UTC") -> pd.Series:
    """For each event, the `video_id` of the same user's previous event if it lies within
    `window`, else None. Events are ordered by `ts` per user with a stable sort, so events with
    equal timestamps keep their input order. `window` is a pandas offset ("30min": the gap to
    the previous event is at most 30 minutes) or "calendar_day" (the previous event is on the
    same calendar date in `timezone`, the log's local time). The result is aligned with
    `events.index`."""
    same_session = _session_rule(window)
    missing = [name for name in ("user_id", "video_id", "ts") if name not in events.columns]
    if missing:
        raise ValueError(f"events: column(s) {missing} needed to derive {SOURCE_COLUMN}")
    users, _ = pd.factorize(events["user_id"], use_na_sentinel=True)
    utc = pd.to_datetime(events["ts"], utc=True)
    stamps = utc.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    known = ~np.isnat(stamps)
    nanos = stamps.view("int64")
    # The window is judged on local wall-clock time (a calendar day starts at local midnight).
    local = _local_nanos(utc, timezone) if window == CALENDAR_DAY else nanos

    order = _stable_order(users, nanos)
    users, known, local = users[order], known[order], local[order]
    videos = events["video_id"].to_numpy(dtype=object)[order]

    # Row i's predecessor is row i - 1 of the sorted arrays when both belong to the same user,
    # both have a timestamp, and the pair passes the window's rule.
    linked = (users[1:] == users[:-1]) & (users[1:] >= 0) & known[1:] & known[:-1]
    linked &= same_session(local[:-1], local[1:])
    sources = np.full(len(order), None, dtype=object)
    sources[1:][linked] = videos[:-1][linked]

    aligned = np.empty(len(order), dtype=object)
    aligned[order] = sources
    return pd.Series(aligned, index=events.index, name=SOURCE_COLUMN, dtype=object)


def fill_source_video_ids(events: pd.DataFrame, window: str, timezone: str = "UTC") -> pd.DataFrame:
    """A copy of `events` whose `source_video_id` is derived when the column is absent or
    entirely null. A column that is partly filled is kept as given: there a null means the event
    had no source (a direct visit), not that the value was lost."""
    filled = events.copy()
    if SOURCE_COLUMN in filled.columns and filled[SOURCE_COLUMN].notna().any():
        return filled
    filled[SOURCE_COLUMN] = derive_source_video_ids(filled, window, timezone)
    log.info(
        "derived %s for %d events (window %s): %d have a source",
        SOURCE_COLUMN,
        len(filled),
        window,
        int(filled[SOURCE_COLUMN].notna().sum()),
    )
    return filled


def _local_nanos(utc: pd.Series, timezone: str) -> np.ndarray:
    try:
        local = utc.dt.tz_convert(timezone)
    except Exception as error:  # pytz and zoneinfo raise different kinds
        raise ValueError(f"timezone {timezone!r}: not a known time zone") from error
    return local.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view("int64")


def _stable_order(users: np.ndarray, nanos: np.ndarray) -> np.ndarray:
    """Row order by (user, time), ties in input order. A log already grouped by user and
    sorted by time (the usual case) skips the sort, the costliest step on large logs."""
    same_user = users[1:] == users[:-1]
    if (users[1:] >= users[:-1]).all() and (nanos[1:] >= nanos[:-1])[same_user].all():
        return np.arange(len(users))  # factorize numbers users by first appearance
    return np.lexsort((nanos, users))


def _session_rule(window: str):
    """A function (previous_ns, current_ns) -> bool array: is the pair in one session?"""
    if window == CALENDAR_DAY:
        return lambda previous, current: previous // _NS_PER_DAY == current // _NS_PER_DAY
    limit = _parse_window(window).value
    return lambda previous, current: (current - previous) <= limit


def _parse_window(window: object) -> pd.Timedelta:
    bad = ValueError(
        f"source window {window!r}: expected a fixed pandas offset such as '30min' or '2h', "
        f"or {CALENDAR_DAY!r}"
    )
    if not isinstance(window, str) or not window.strip():
        raise bad
    try:
        span = pd.Timedelta(window)  # "30min", "2h", "1D", "90s", "1 day"
    except ValueError as error:
        raise bad from error
    if pd.isna(span) or span < pd.Timedelta(0):
        raise bad
    return span
