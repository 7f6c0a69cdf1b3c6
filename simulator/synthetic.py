"""The synthetic world: a catalog, an audience and a session log made deterministically from a seed,
planting what the method must handle, with the truth written beside the data.

Planted: series and genres that make videos truly related, blockbusters of every genre that most
users click (the popularity confound), accidental clicks, likes, shares and dislikes that follow
how well a target matches its source, cold videos, and churn that follows satisfaction. Sessions
are simulated day by day; the number of sessions per day is steered so that the log ends close to
the size's `events` (within a few percent once the first day has shown the mean session length).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipelines.config import SyntheticConfig, SyntheticSize
from pipelines.data.io import write_table
from simulator.behaviour import (
    DAY_S,
    BehaviourModel,
    close_day,
    make_audience,
    new_user_state,
    walk_sessions,
)
from simulator.catalog import Catalog, make_catalog
from simulator.policy import LoggingPolicy

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("clicked", "play_time_s", "liked", "shared", "disliked")


@dataclass
class SyntheticData:
    videos: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame
    truth: dict[str, pd.DataFrame]  # keys: "videos", "users", "events"


@dataclass
class World:
    """The synthetic world before anyone watches: its catalog, its audience (tables, truth and
    daily activity) and the behaviour model that makes them respond."""

    config: SyntheticConfig
    size: SyntheticSize
    start: pd.Timestamp
    catalog: Catalog
    users: pd.DataFrame
    user_truth: pd.DataFrame
    activity: np.ndarray
    model: BehaviourModel


def build_world(config: SyntheticConfig, size: SyntheticSize, rng: np.random.Generator) -> World:
    """The catalog, then the audience, drawn from `rng`; `generate` goes on to simulate the log
    with the same generator, so `np.random.default_rng(seed)` here rebuilds its world exactly."""
    start = pd.Timestamp(config.start_date, tz="UTC")
    catalog = make_catalog(config, size, start, rng)
    users, user_truth, traits, activity = make_audience(config, size, start, rng)
    model = BehaviourModel(config, catalog.traits, traits)
    return World(config, size, start, catalog, users, user_truth, activity, model)


def generate(
    config: SyntheticConfig, seed: int, size: SyntheticSize | None = None, progress: bool = False
) -> SyntheticData:
    """The synthetic world for `seed` at `size` (default: the configured preset)."""
    size = size or config.preset
    rng = np.random.default_rng(seed)
    world = build_world(config, size, rng)
    catalog, users, user_truth = world.catalog, world.users, world.user_truth
    walked, state = simulate_days(config, size, catalog, world.activity, world.model, rng, progress)
    events, event_truth = _event_frames(walked, catalog.videos, users, world.start)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_satisfaction = state["score"] / state["clicks"]  # NaN: never clicked
    user_truth = user_truth.assign(
        sessions=state["sessions"],
        satisfaction=state["satisfaction"],
        mean_satisfaction=mean_satisfaction,
        churn_day=np.where(state["churn_day"] >= 0, state["churn_day"], np.nan),
    )
    log.info(
        "synthetic world (seed %d): %d videos (%d in series, %d blockbusters, %d cold), "
        "%d users (%d churned), %d events (asked %d), %d sessions",
        seed,
        len(catalog.videos),
        catalog.truth["series_id"].notna().sum(),
        catalog.is_blockbuster.sum(),
        catalog.is_cold.sum(),
        len(users),
        (state["churn_day"] >= 0).sum(),
        len(events),
        size.events,
        state["sessions"].sum(),
    )
    truth = {"videos": catalog.truth, "users": user_truth, "events": event_truth}
    return SyntheticData(catalog.videos, users, events, truth)


def write_synthetic(data: SyntheticData, folder: Path) -> dict[str, Path]:
    """Write the three contract tables and, under `truth/`, the truth tables, as Parquet;
    return the paths of the contract tables."""
    folder = Path(folder)
    for name, frame in data.truth.items():
        write_table(frame, folder / "truth" / f"{name}.parquet")
    return {
        name: write_table(frame, folder / f"{name}.parquet")
        for name, frame in (("videos", data.videos), ("users", data.users), ("events", data.events))
    }


def simulate_days(
    config: SyntheticConfig,
    size: SyntheticSize,
    catalog: Catalog,
    activity: np.ndarray,
    model: BehaviourModel,
    rng: np.random.Generator,
    progress: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Day by day: users who have not left start sessions (Poisson, by activity, steered towards
    the size's events), walk them, then update their satisfaction and may leave for good."""
    params, n_users = config.sessions, len(activity)
    policy = LoggingPolicy(config, catalog, model.users.preference)
    state = {**new_user_state(model, n_users), "busy_until": np.zeros(n_users)}
    parts, events, sessions = [], 0, 0
    per_session = params.initial_events_per_session
    for day in tqdm(range(size.days), desc="synthetic days", unit="day", disable=not progress):
        policy.open_day(day)
        present = activity * (state["churn_day"] < 0)
        wanted = max(size.events - events, 0) / (size.days - day)
        counts = rng.poisson(present * wanted / per_session / max(present.sum(), 1e-12))
        users = np.repeat(np.arange(n_users), counts)
        walked = walk_sessions(model, policy, users, params, rng)
        starts = _session_starts(users, walked.pop("end_s"), day, state["busy_until"], params, rng)
        walked["t_s"] = walked["t_s"] + starts[walked["session"]]
        in_log = walked["t_s"] < size.days * DAY_S  # the log ends with its last day
        walked = {key: values[in_log] for key, values in walked.items()}
        walked["user"] = users[walked["session"]]
        walked["session"] = walked["session"] + sessions
        walked["satisfaction"] = model.satisfaction(walked)
        parts.append(walked)
        close_day(model, state, walked, day, rng.random(n_users))
        events, sessions = events + len(walked["video"]), sessions + len(users)
        per_session = max(events / sessions, 1.0) if sessions else per_session
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}, state


def _session_starts(
    users: np.ndarray,
    lengths: np.ndarray,
    day: int,
    busy_until: np.ndarray,
    params,
    rng: np.random.Generator,
) -> np.ndarray:
    """Start times (seconds from the log's start) of a day's sessions, `users` sorted: a user's
    sessions follow one another with pauses and never overlap, not even across days."""
    n = len(users)
    pause = rng.exponential(params.session_gap_hours * 3600.0, (2, n))
    first = np.r_[True, users[1:] != users[:-1]] if n else np.zeros(0, dtype=bool)
    head = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    stride = lengths + pause[0]
    before = np.cumsum(stride) - stride
    opening = np.maximum(
        day * DAY_S + rng.random(n) * params.first_session_hours * 3600.0,
        busy_until[users] + pause[1],
    )
    starts = opening[head] + before - before[head]
    last = np.r_[first[1:], True] if n else first
    busy_until[users[last]] = starts[last] + lengths[last]
    return starts


def _event_frames(
    walked: dict[str, np.ndarray], videos: pd.DataFrame, users: pd.DataFrame, start: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events table, ordered by time, and its truth row for row."""
    milliseconds = np.round(walked["t_s"] * 1000.0).astype(np.int64)
    order = np.lexsort((walked["video"], walked["user"], milliseconds))
    video_ids, user_ids = videos["video_id"].to_numpy(), users["user_id"].to_numpy()
    source = walked["source"][order]
    source_ids = video_ids[np.maximum(source, 0)]
    source_ids[source < 0] = None
    key = {
        "user_id": user_ids[walked["user"][order]],
        "video_id": video_ids[walked["video"][order]],
    }
    ts = pd.to_datetime(start.value + milliseconds[order] * 1_000_000, utc=True)
    events = pd.DataFrame(
        {
            **key,
            "source_video_id": source_ids,
            "ts": ts,
            **{
                name: walked[name][order].astype(np.float64 if name == "play_time_s" else np.int64)
                for name in EVENT_COLUMNS
            },
        }
    )
    truth = pd.DataFrame(
        {
            **key,
            "ts": ts,
            **{
                name: walked[name][order].astype(
                    np.int64 if name == "accidental" else walked[name].dtype
                )
                for name in ("session", "step", "position", "match", "accidental", "satisfaction")
            },
        }
    )
    return events, truth.rename(columns={"session": "session_id"})
