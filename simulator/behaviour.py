"""The synthetic users: who they are, how they respond to a video shown under a source video, how
they walk from video to video in a session, and whether they come back.

One model for the whole synthetic world: the generator logs with it, and a simulation of a
recommender's lists reuses it, so both see the same users. Every weight comes from configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from pipelines.config import SyntheticConfig, SyntheticSessions, SyntheticSize

# What a logit weight in `synthetic.behaviour` may refer to.
FEATURES = ("bias", "match", "affinity", "quality", "appeal", "taste", "watched")
# The outcomes a clicked impression's satisfaction weighs (`synthetic.behaviour.satisfaction`).
SATISFACTION = ("liked", "shared", "watched_half", "disliked", "accidental")
DAY_S = 86_400.0
GENRE_NAMES = (
    "drama",
    "comedy",
    "action",
    "romance",
    "thriller",
    "horror",
    "documentary",
    "animation",
    "crime",
    "fantasy",
    "scifi",
    "family",
    "music",
    "sports",
    "history",
    "reality",
)


def genre_names(count: int) -> list[str]:
    """The first `count` genre names; past the named ones, `genre17`, `genre18`, ..."""
    return [GENRE_NAMES[i] if i < len(GENRE_NAMES) else f"genre{i + 1}" for i in range(count)]


@dataclass(frozen=True)
class VideoTraits:
    """The hidden side of the catalog, one entry per video position."""

    genre: np.ndarray  # genre index
    series: np.ndarray  # series index, -1 for a standalone video
    quality: np.ndarray
    appeal: np.ndarray  # blockbusters' is high: clicks wherever they are shown
    duration_s: np.ndarray


@dataclass(frozen=True)
class UserTraits:
    """The hidden side of the audience, one entry per user position."""

    preference: np.ndarray  # (users, genres), each row sums to 1
    taste: np.ndarray  # how easily pleased: more likes, fewer dislikes


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_audience(
    config: SyntheticConfig, size: SyntheticSize, start: pd.Timestamp, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame, UserTraits, np.ndarray]:
    """Users whose genre tastes lean on their (age, gender) segment, so that user features say
    something; level follows activity. Returns the users table, its truth, traits, activity."""
    aud, n, n_genres = config.audience, size.users, config.genres
    age, gender = draw_indices(aud.age_buckets, n, rng), draw_indices(aud.genders, n, rng)
    segment = age * len(aud.genders) + gender
    segment_taste = rng.dirichlet(
        np.full(n_genres, aud.segment_concentration), size=len(aud.age_buckets) * len(aud.genders)
    )
    preference = rng.standard_gamma(aud.genre_concentration * n_genres * segment_taste[segment])
    preference = np.maximum(preference, np.finfo(float).tiny)
    preference /= preference.sum(axis=1, keepdims=True)
    activity = rng.lognormal(-(aud.activity_sd**2) / 2, aud.activity_sd, n)
    noisy = np.log(activity) + aud.level_noise * rng.standard_normal(n)
    level = 1.0 + np.argsort(np.argsort(noisy)) * aud.levels // n
    taste = rng.normal(0.0, aud.taste_sd, n)
    registered_s = np.round((1.0 - rng.random(n)) * aud.registration_days * DAY_S)
    user_ids = np.array([f"u{i:06d}" for i in range(n)], dtype=object)
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "age_bucket": np.array(list(aud.age_buckets), dtype=object)[age],
            "gender": np.array(list(aud.genders), dtype=object)[gender],
            "level": level,
            "registered_at": start - pd.to_timedelta(registered_s, unit="s"),
        }
    )
    truth = pd.DataFrame(
        {
            "user_id": user_ids,
            "favourite_genre": np.array(genre_names(n_genres), dtype=object)[preference.argmax(1)],
            "genre_preference": list(preference),
            "activity": activity,
            "taste": taste,
        }
    )
    return users, truth, UserTraits(preference=preference, taste=taste), activity


def draw_indices(weights: Mapping[str, float], count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` positions in `weights` drawn with its (unnormalized) weights."""
    p = np.array(list(weights.values()), dtype=float)
    return rng.choice(len(p), size=count, p=p / p.sum())


def draw_categories(
    weights: Mapping[str, float], count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` names of `weights` drawn with its weights."""
    return np.array(list(weights), dtype=object)[draw_indices(weights, count, rng)]


class BehaviourModel:
    """Vectorized responses to impressions (user, source, target) and a daily churn law."""

    def __init__(self, config: SyntheticConfig, videos: VideoTraits, users: UserTraits):
        self.params = config.behaviour
        self.accidental_click_rate = config.accidental_click_rate
        self.videos = videos
        self.users = users
        for name in ("click", "play", "like", "share", "dislike", "churn"):
            known = {"bias", "satisfaction"} if name == "churn" else set(FEATURES)
            unknown = set(getattr(self.params, name)) - known
            if unknown:
                raise ValueError(f"synthetic.behaviour.{name}: unknown features {sorted(unknown)}")
        if set(self.params.satisfaction) != set(SATISFACTION):
            raise ValueError(f"synthetic.behaviour.satisfaction: expected keys {SATISFACTION}")

    @classmethod
    def from_truth(
        cls, config: SyntheticConfig, videos: pd.DataFrame, truth: Mapping[str, pd.DataFrame]
    ) -> BehaviourModel:
        """The model of a written world: `videos` is its contract table, `truth` its truth
        tables; video and user positions are the rows of `truth["videos"]` and `truth["users"]`."""
        tv, tu = truth["videos"], truth["users"]
        preference = np.stack(tu["genre_preference"].map(np.asarray).to_list())
        genre_index = {name: i for i, name in enumerate(genre_names(preference.shape[1]))}
        series_index = {s: i for i, s in enumerate(tv["series_id"].dropna().unique())}
        duration = videos.set_index("video_id")["duration_s"].reindex(tv["video_id"])
        return cls(
            config,
            VideoTraits(
                genre=tv["genre"].map(genre_index).to_numpy(int),
                series=tv["series_id"].map(series_index).fillna(-1).to_numpy(int),
                quality=tv["quality"].to_numpy(float),
                appeal=tv["appeal"].to_numpy(float),
                duration_s=duration.to_numpy(float),
            ),
            UserTraits(preference=preference, taste=tu["taste"].to_numpy(float)),
        )

    def match(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """How well a target fits its source: same series > same genre > anything else;
        `no_source` where the source is -1 (the user picked the video themselves)."""
        weights = self.params.match
        has_source = sources >= 0
        source = np.where(has_source, sources, 0)
        series, genre = self.videos.series, self.videos.genre
        same_series = has_source & (series[source] == series[targets]) & (series[targets] >= 0)
        same_genre = has_source & (genre[source] == genre[targets])
        return np.select(
            [~has_source, same_series, same_genre],
            [weights["no_source"], weights["same_series"], weights["same_genre"]],
            weights["other"],
        )

    def affinity(self, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The user's taste for the target's genre: log of (genres * preference), clipped;
        0 is an average genre for this user."""
        preference = self.users.preference
        share = preference[users, self.videos.genre[targets]] * preference.shape[1]
        low, high = self.params.affinity_range
        with np.errstate(divide="ignore"):
            return np.clip(np.log(share), low, high)

    def respond(
        self,
        users: np.ndarray,
        sources: np.ndarray,
        targets: np.ndarray,
        rng: np.random.Generator,
        chosen: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Outcomes of impressions of `targets` shown to `users` under `sources` (-1: none).

        `chosen` marks videos the user picked themselves (always a genuine click). A non-click
        becomes an accidental click at `accidental_click_rate`: a few seconds played, never a
        like or share. Every array is drawn for every impression, so results depend only on the
        inputs and the generator's state."""
        n = len(targets)
        features = {
            "bias": np.ones(n),
            "match": self.match(sources, targets),
            "affinity": self.affinity(users, targets),
            "quality": self.videos.quality[targets],
            "appeal": self.videos.appeal[targets],
            "taste": self.users.taste[users],
        }
        draws = rng.random((6, n))
        genuine = draws[0] < sigmoid(self._logit("click", features))
        if chosen is not None:
            genuine |= chosen
        accidental = ~genuine & (draws[1] < self.accidental_click_rate)
        noise = self.params.play_noise_sd * rng.standard_normal(n)
        watched = sigmoid(self._logit("play", features) + noise)
        features["watched"] = watched
        duration = self.videos.duration_s[targets]
        low, high = self.params.accidental_play_s
        quick = np.minimum(low + (high - low) * draws[2], duration)
        play_time = np.where(genuine, watched * duration, np.where(accidental, quick, 0.0))
        liked = genuine & (draws[3] < sigmoid(self._logit("like", features)))
        shared = genuine & (draws[4] < sigmoid(self._logit("share", features)))
        disliked = genuine & ~liked & (draws[5] < sigmoid(self._logit("dislike", features)))
        return {
            "clicked": (genuine | accidental).astype(np.int8),
            "accidental": accidental.astype(np.int8),
            "play_time_s": play_time,
            "liked": liked.astype(np.int8),
            "shared": shared.astype(np.int8),
            "disliked": disliked.astype(np.int8),
            "watched_half": (genuine & (watched >= 0.5)).astype(np.int8),
            "match": features["match"],
        }

    def satisfaction(self, response: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each impression's contribution to its user's satisfaction (0 when not clicked)."""
        weights = self.params.satisfaction
        return sum(weights[name] * response[name] for name in SATISFACTION)

    def churn_probability(self, satisfaction: np.ndarray) -> np.ndarray:
        """The probability of leaving for good on a given day, from a user's satisfaction."""
        satisfaction = np.asarray(satisfaction, dtype=float)
        return sigmoid(self._logit("churn", {"bias": 1.0, "satisfaction": satisfaction}))

    def return_probability(self, satisfaction: np.ndarray, days: int) -> np.ndarray:
        """The probability of still being a user after `days` days at this satisfaction."""
        return (1.0 - self.churn_probability(satisfaction)) ** days

    def _logit(self, outcome: str, features: Mapping[str, np.ndarray]) -> np.ndarray:
        weights = getattr(self.params, outcome)
        return sum(weight * features[name] for name, weight in weights.items())


class SlatePolicy(Protocol):
    """What chooses the videos a session sees: the logging policy, or a recommender."""

    def first_videos(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def slate(self, sources: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(targets, shown), two (sources, slate size) arrays: `shown` marks the impressions."""
        ...


def walk_sessions(
    model: BehaviourModel,
    policy: SlatePolicy,
    users: np.ndarray,
    params: SyntheticSessions,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """One session per entry of `users`, all walked at once: a first video the user picks, then
    a slate under the video being watched, again and again while the user genuinely clicks
    something (the last one clicked is watched next), does not stop, and `max_steps` allows.

    Returns one array per impression (`session` indexes `users`, `t_s` is seconds from the
    session's start, `step` 0 is the first video) and `end_s`, each session's length."""
    n = len(users)
    everyone = np.arange(n)
    low_gap, high_gap = params.step_gap_s
    first = policy.first_videos(users, rng)
    response = model.respond(users, np.full(n, -1), first, rng, chosen=np.ones(n, dtype=bool))
    parts = [_impressions(everyone, first, np.full(n, -1), 0, np.zeros(n), np.zeros(n), response)]
    source = first.copy()
    clock = response["play_time_s"] + rng.uniform(low_gap, high_gap, n)
    alive = everyone
    for step in range(1, params.max_steps + 1):
        if not len(alive):
            break
        targets, shown = policy.slate(source[alive], rng)
        shown = shown.ravel()
        rows = np.repeat(alive, targets.shape[1])[shown]
        target = targets.ravel()[shown]
        position = np.tile(np.arange(targets.shape[1]), len(alive))[shown]
        response = model.respond(users[rows], source[rows], target, rng)
        parts.append(
            _impressions(rows, target, source[rows], step, position, clock[rows], response)
        )
        genuine = np.flatnonzero((response["clicked"] == 1) & (response["accidental"] == 0))
        last = genuine[np.r_[rows[genuine][1:] != rows[genuine][:-1], True][: len(genuine)]]
        source[rows[last]] = target[last]
        spent = np.bincount(rows, weights=response["play_time_s"], minlength=n)
        clock[alive] += spent[alive] + rng.uniform(low_gap, high_gap, len(alive))
        going_on = np.zeros(n, dtype=bool)
        going_on[rows[last]] = True
        alive = np.flatnonzero(going_on & (rng.random(n) >= params.stop_prob))
    walked = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    walked["end_s"] = clock
    return walked


def new_user_state(model: BehaviourModel, n_users: int) -> dict[str, np.ndarray]:
    """Users at the start of a simulation: nobody has left (`churn_day` -1), no sessions, the
    satisfaction prior, no clicks yet (`score` and `clicks` sum what the users clicked)."""
    return {
        "churn_day": np.full(n_users, -1),
        "sessions": np.zeros(n_users, dtype=int),
        "satisfaction": np.full(n_users, model.params.satisfaction_prior),
        "score": np.zeros(n_users),
        "clicks": np.zeros(n_users),
    }


def close_day(
    model: BehaviourModel,
    state: dict[str, np.ndarray],
    walked: Mapping[str, np.ndarray],
    day: int,
    leave_draws: np.ndarray,
) -> None:
    """The end of a day, in place: each user's satisfaction moves towards the mean satisfaction
    of the day's clicks (`satisfaction_memory` of the old value is kept; no click, no change),
    then a user who has not left leaves for good where `leave_draws` (uniform, one per user)
    falls under the churn probability. `walked` holds the day's impressions with their `user`
    and `satisfaction`."""
    n_users = len(state["satisfaction"])
    clicked = walked["clicked"] == 1
    score = np.bincount(walked["user"][clicked], walked["satisfaction"][clicked], n_users)
    clicks = np.bincount(walked["user"][clicked], minlength=n_users)
    seen, memory = clicks > 0, model.params.satisfaction_memory
    state["satisfaction"][seen] = (
        memory * state["satisfaction"][seen] + (1.0 - memory) * score[seen] / clicks[seen]
    )
    state["score"] += score
    state["clicks"] += clicks
    leaving = (state["churn_day"] < 0) & (
        leave_draws < model.churn_probability(state["satisfaction"])
    )
    state["churn_day"][leaving] = day
    state["sessions"] += np.bincount(walked["user"][walked["step"] == 0], minlength=n_users)


def _impressions(sessions, targets, sources, step, position, t_s, response) -> dict:
    return {
        "session": sessions,
        "video": targets,
        "source": sources,
        "step": np.full(len(targets), step, dtype=np.int16),
        "position": position.astype(np.int8),
        "t_s": t_s,
        **response,
    }
