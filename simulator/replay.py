"""A recommender's related lists replayed in the synthetic world: the users, sessions, behaviour
model and churn law that generated the log, with the method's list shown under each video.

One arm of the simulated live experiment. Population: every user of the world (its own activity),
from a fresh start (nobody has left, satisfaction at its prior), on the days that follow the log
(every video published). Sessions: each day a user starts Poisson(activity x rate) sessions, rate
= the log's own sessions per activity-day; a session opens on a video the logging policy picks,
then walks the method's slates (behaviour.walk_sessions). Retention: at the end of each day the
generator's law (satisfaction running mean, daily churn probability); a user is retained who has
not left after the experiment's last day. For common random numbers across arms, the session
counts, the churn draws and each day's walk come from separate streams of the seed, and users who
have left still walk their sessions (their impressions are dropped): every arm then sees the same
sessions open on the same videos with the same first responses, and only the lists differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator.behaviour import close_day, new_user_state, walk_sessions
from simulator.policy import LoggingPolicy
from simulator.synthetic import World


class ListPolicy:
    """A method's related lists as the world's slate policy. Sessions open as in the log (the
    logging policy picks the first video, so every method gets the same openings under the same
    seed). Under a source it shows the first `slate_size` videos of the source's list, in rank
    order, never the source itself. A source without a list shows nothing: the session ends
    there, as a page with an empty "watch next" box would, so a method that covers fewer videos
    keeps its users for fewer steps."""

    def __init__(self, opening: LoggingPolicy, slates: np.ndarray):
        self.opening = opening
        self.slates = slates  # (videos, slate size) video positions, -1 past the list's end

    def open_day(self, day: int) -> None:
        self.opening.open_day(day)

    def first_videos(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.opening.first_videos(users, rng)

    def slate(self, sources: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        targets = self.slates[sources]
        shown = (targets >= 0) & (targets != sources[:, None])
        return np.where(shown, targets, 0), shown


def slate_matrix(lists: pd.DataFrame, video_ids: np.ndarray, slate_size: int) -> np.ndarray:
    """(videos, slate_size) positions in `video_ids` of each source's related videos, best rank
    first, -1 past the end of a shorter list or for a source without one. `lists` has video_id,
    rank and related_video_id; an id not in `video_ids` is a ValueError."""
    index = pd.Index(video_ids)
    ordered = lists.sort_values(["video_id", "rank"], kind="stable")
    sources = index.get_indexer(ordered["video_id"])
    targets = index.get_indexer(ordered["related_video_id"])
    unknown = (sources < 0) | (targets < 0)
    if unknown.any():
        row = ordered[unknown].iloc[0]
        raise ValueError(
            f"{int(unknown.sum())} list rows name videos not in the catalog, e.g. "
            f"{row['video_id']!r} -> {row['related_video_id']!r}"
        )
    place = ordered.groupby("video_id", sort=False).cumcount().to_numpy()
    keep = place < slate_size
    slates = np.full((len(video_ids), slate_size), -1, dtype=np.int64)
    slates[sources[keep], place[keep]] = targets[keep]
    return slates


@dataclass
class ArmOutcome:
    """One arm's simulated week. `impressions`: one entry per impression of a user who had not
    left (day, session within the day, user, step (0 = the video the session opened on), video,
    source, position, and the responses: clicked, accidental, play_time_s, liked, shared,
    disliked, watched_half, satisfaction). Per user: `churn_day`, the day they left (-1: never),
    `retained` (not left after the last day) and `satisfaction` at the end."""

    impressions: dict[str, np.ndarray]
    churn_day: np.ndarray
    satisfaction: np.ndarray

    @property
    def retained(self) -> np.ndarray:
        return self.churn_day < 0


def logged_session_rate(user_truth: pd.DataFrame, days: int) -> float:
    """Sessions a user of activity 1 started per day in the generated log: the sum of the truth's
    `sessions` over the sum of activity x days present (up to and with the day a user left)."""
    churn_day = user_truth["churn_day"].to_numpy(float)
    present = np.where(np.isnan(churn_day), days, churn_day + 1.0)
    exposure = float((user_truth["activity"].to_numpy(float) * present).sum())
    return float(user_truth["sessions"].sum()) / exposure if exposure > 0 else 0.0


def run_arm(
    world: World,
    slates: np.ndarray,
    days: int,
    sessions_per_day: float,
    seed: int | Sequence[int],
) -> ArmOutcome:
    """Show `slates` (see `slate_matrix`) to the world's users for `days` days after the log.

    `sessions_per_day`: mean sessions a user of activity 1 starts per day (`logged_session_rate`).
    The same `seed` gives the same result; two arms with the same seed share every session's
    opening (see the module's docstring)."""
    if days < 1:
        raise ValueError(f"an arm runs for at least one day, not {days}")
    config, model = world.config, world.model
    n_users = len(world.activity)
    counts_stream, leave_stream, *day_streams = np.random.SeedSequence(seed).spawn(2 + days)
    counts = np.random.default_rng(counts_stream).poisson(
        world.activity * sessions_per_day, size=(days, n_users)
    )
    leave_draws = np.random.default_rng(leave_stream).random((days, n_users))
    policy = ListPolicy(LoggingPolicy(config, world.catalog, model.users.preference), slates)
    state = new_user_state(model, n_users)
    parts = []
    for day in range(days):
        policy.open_day(world.size.days + day)  # after the log: every video is out
        users = np.repeat(np.arange(n_users), counts[day])
        walked = walk_sessions(
            model, policy, users, config.sessions, np.random.default_rng(day_streams[day])
        )
        del walked["end_s"], walked["t_s"]  # no metric looks at the time of day
        walked["user"] = users[walked["session"]]
        present = state["churn_day"][walked["user"]] < 0
        walked = {key: values[present] for key, values in walked.items()}
        walked["day"] = np.full(len(walked["user"]), day, dtype=np.int16)
        walked["satisfaction"] = model.satisfaction(walked)
        close_day(model, state, walked, day, leave_draws[day])
        parts.append(walked)
    impressions = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return ArmOutcome(impressions, state["churn_day"], state["satisfaction"])
