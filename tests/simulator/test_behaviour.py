"""The synthetic users' behaviour model alone, on hand-made videos and users."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.behaviour import BehaviourModel, UserTraits, VideoTraits, walk_sessions

N = 20_000  # impressions per case: sampling noise far below the effects checked

# Videos: 0 and 1 one series of genre 0, 2 another series of genre 0, 3 a standalone of genre 1.
SOURCE, SAME_SERIES, SAME_GENRE, UNRELATED = 0, 1, 2, 3


@pytest.fixture(scope="module")
def model(config) -> BehaviourModel:
    videos = VideoTraits(
        genre=np.array([0, 0, 0, 1]),
        series=np.array([0, 0, 1, -1]),
        quality=np.zeros(4),
        appeal=np.zeros(4),
        duration_s=np.full(4, 1200.0),
    )
    genres = config.synthetic.genres
    flat = np.full(genres, 1.0 / genres)  # every genre as dear: only the match differs
    users = UserTraits(preference=np.stack([flat, flat]), taste=np.zeros(2))
    return BehaviourModel(config.synthetic, videos, users)


def _respond(model, target, seed=0, **kwargs):
    users, sources = np.zeros(N, dtype=int), np.full(N, SOURCE)
    rng = np.random.default_rng(seed)
    return model.respond(users, sources, np.full(N, target), rng, **kwargs)


def test_match_ranks_series_over_genre_over_unrelated(model):
    match = model.match(np.array([0, 0, 0, -1]), np.array([1, 2, 3, 1]))
    weights = model.params.match
    assert match.tolist() == [
        weights["same_series"],
        weights["same_genre"],
        weights["other"],
        weights["no_source"],
    ]
    assert match[0] > match[1] > match[2]


def test_a_better_match_gets_more_clicks_and_likes_and_fewer_dislikes(model):
    rates = {}
    for target in (SAME_SERIES, SAME_GENRE, UNRELATED):
        response = _respond(model, target)
        genuine = (response["clicked"] == 1) & (response["accidental"] == 0)
        rates[target] = {
            "click": genuine.mean(),
            "like": response["liked"].mean(),
            "share": response["shared"].mean(),
            "dislike_per_click": response["disliked"][genuine].mean(),
            "play": response["play_time_s"][genuine].mean(),
        }
    best, middle, worst = rates[SAME_SERIES], rates[SAME_GENRE], rates[UNRELATED]
    for outcome in ("click", "like", "share", "play"):
        assert best[outcome] > middle[outcome] > worst[outcome], outcome
    assert best["dislike_per_click"] < middle["dislike_per_click"] < worst["dislike_per_click"]


def test_respond_is_deterministic_per_generator_seed(model):
    first, again, other = (_respond(model, SAME_GENRE, seed) for seed in (7, 7, 8))
    assert first.keys() == again.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert any(not np.array_equal(first[name], other[name]) for name in first)


def test_accidental_clicks_are_short_and_never_liked_or_shared(model):
    response = _respond(model, UNRELATED)
    accidental = response["accidental"] == 1
    genuine = (response["clicked"] == 1) & ~accidental
    assert accidental.any()
    assert (response["clicked"][accidental] == 1).all()
    assert response["play_time_s"][accidental].max() <= model.params.accidental_play_s[1]
    assert response["liked"][accidental].sum() == 0
    assert response["shared"][accidental].sum() == 0
    # the rate applies to impressions that were not genuine clicks
    expected = model.accidental_click_rate * (~genuine).mean()
    assert accidental.mean() == pytest.approx(expected, rel=0.2)


def test_outcomes_are_consistent(model):
    response = _respond(model, SAME_SERIES)
    clicked = response["clicked"] == 1
    assert (response["play_time_s"][~clicked] == 0).all()
    assert (response["play_time_s"] <= 1200.0).all()
    for flag in ("liked", "shared", "disliked", "watched_half"):
        assert set(np.unique(response[flag])) <= {0, 1}
        assert not (response[flag].astype(bool) & ~clicked).any(), flag
    assert not (response["liked"].astype(bool) & response["disliked"].astype(bool)).any()


def test_a_video_the_user_chose_is_always_a_genuine_click(model):
    response = _respond(model, UNRELATED, chosen=np.ones(N, dtype=bool))
    assert (response["clicked"] == 1).all()
    assert (response["accidental"] == 0).all()


def test_satisfied_users_churn_less(model):
    satisfaction = np.linspace(-1.0, 1.5, 11)
    churn = model.churn_probability(satisfaction)
    assert (np.diff(churn) < 0).all()
    assert ((churn > 0) & (churn < 1)).all()
    week = model.return_probability(satisfaction, days=7)
    assert (np.diff(week) > 0).all()
    assert (week < model.return_probability(satisfaction, days=1)).all()


class _FixedSlate:
    """A policy that opens on video 0 and always shows videos 1, 2 and 3 under any source."""

    def first_videos(self, users, rng):
        return np.zeros(len(users), dtype=int)

    def slate(self, sources, rng):
        targets = np.tile([1, 2, 3], (len(sources), 1))
        return targets, targets != sources[:, None]


def test_a_session_walks_from_a_clicked_video_to_the_slate_under_it(model, config):
    params = config.synthetic.sessions
    walked = walk_sessions(
        model, _FixedSlate(), np.zeros(500, dtype=int), params, np.random.default_rng(3)
    )
    first = walked["step"] == 0
    assert (walked["source"][first] == -1).all() and (walked["source"][~first] >= 0).all()
    assert walked["step"].max() <= params.max_steps
    assert (walked["t_s"] <= walked["end_s"][walked["session"]]).all()
    genuine = (walked["clicked"] == 1) & (walked["accidental"] == 0)
    watched = {
        (s, step, v)
        for s, step, v in zip(
            walked["session"][genuine | first],
            walked["step"][genuine | first],
            walked["video"][genuine | first],
            strict=True,
        )
    }
    for session, step, source, t_s in zip(
        walked["session"][~first],
        walked["step"][~first],
        walked["source"][~first],
        walked["t_s"][~first],
        strict=True,
    ):
        assert (session, step - 1, source) in watched
        assert t_s > 0
    # never the source itself, and a slate shows a video once
    assert (walked["video"][~first] != walked["source"][~first]).all()
