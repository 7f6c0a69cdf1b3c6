"""Related lists replayed in the toy synthetic world: the generator's own world and behaviour,
related lists beat unrelated ones, one seed one result, and every arm opens the same sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.policy import LoggingPolicy
from simulator.replay import ListPolicy, logged_session_rate, run_arm, slate_matrix
from simulator.synthetic import build_world

DAYS = 7
RATE = 1.0  # sessions per activity-day: more than the log's, for steadier rates on 150 users


@pytest.fixture(scope="module")
def world(config):
    toy = config.synthetic.sizes["toy"]
    return build_world(config.synthetic, toy, np.random.default_rng(config.seed))


def _slates(world, related) -> np.ndarray:
    """(videos, slate size) slates whose row v lists the videos `related(v)` marks."""
    traits, k = world.catalog.traits, world.config.slate_size
    slates = np.full((len(traits.genre), k), -1)
    for video in range(len(traits.genre)):
        chosen = np.flatnonzero(related(video, traits))[:k]
        slates[video, : len(chosen)] = chosen
    return slates


@pytest.fixture(scope="module")
def series_slates(world):
    """Each video's series mates, or videos of its genre for a standalone one."""

    def mates(video, traits):
        if traits.series[video] >= 0:
            same = traits.series == traits.series[video]
        else:
            same = traits.genre == traits.genre[video]
        same[video] = False
        return same

    return _slates(world, mates)


@pytest.fixture(scope="module")
def unrelated_slates(world):
    def strangers(video, traits):
        other = traits.genre != traits.genre[video]
        return other & (np.random.default_rng(video).random(len(other)) < 0.5)

    return _slates(world, strangers)


def _rates(outcome) -> dict[str, float]:
    shown = outcome.impressions["step"] >= 1
    return {
        name: outcome.impressions[name][shown].mean() for name in ("clicked", "liked", "disliked")
    }


def test_the_world_is_the_generators(config, world, toy_world):
    pd.testing.assert_frame_equal(world.catalog.videos, toy_world.videos)
    pd.testing.assert_frame_equal(world.users, toy_world.users)
    np.testing.assert_array_equal(world.activity, toy_world.truth["users"]["activity"])


def test_series_lists_get_more_clicks_and_likes_and_fewer_dislikes(
    world, series_slates, unrelated_slates
):
    series = _rates(run_arm(world, series_slates, DAYS, RATE, 1))
    unrelated = _rates(run_arm(world, unrelated_slates, DAYS, RATE, 1))
    assert series["clicked"] > 2 * unrelated["clicked"]
    assert series["liked"] > 2 * unrelated["liked"]
    assert series["disliked"] < unrelated["disliked"]


def test_same_seed_same_outcome_other_seed_other(world, series_slates):
    first, again, other = (run_arm(world, series_slates, DAYS, RATE, s) for s in (3, 3, 4))
    assert first.impressions.keys() == again.impressions.keys()
    for name, values in first.impressions.items():
        np.testing.assert_array_equal(values, again.impressions[name])
    np.testing.assert_array_equal(first.churn_day, again.churn_day)
    assert len(first.impressions["video"]) != len(other.impressions["video"])


def test_arms_share_their_sessions_openings(world, series_slates, unrelated_slates):
    arms = [run_arm(world, slates, DAYS, RATE, 5) for slates in (series_slates, unrelated_slates)]
    keys = ["day", "session", "user", "video", "clicked", "play_time_s", "liked"]
    openings = [
        pd.DataFrame({key: arm.impressions[key] for key in keys})[arm.impressions["step"] == 0]
        for arm in arms
    ]
    both = openings[0].merge(openings[1], on=["day", "session"], suffixes=("", "_other"))
    assert len(both) > 0.5 * max(len(openings[0]), len(openings[1]))
    for key in keys[2:]:
        np.testing.assert_array_equal(both[key], both[f"{key}_other"])
    # On the first day nobody has left yet: every session opens in both arms.
    first_day = [frame[frame["day"] == 0].reset_index(drop=True) for frame in openings]
    pd.testing.assert_frame_equal(first_day[0], first_day[1])


def test_a_user_who_left_is_seen_no_more(world, unrelated_slates):
    outcome = run_arm(world, unrelated_slates, DAYS, RATE, 6)
    left = outcome.churn_day >= 0
    assert left.any() and not left.all()
    users, days = outcome.impressions["user"], outcome.impressions["day"]
    assert not (left[users] & (days > outcome.churn_day[users])).any()
    np.testing.assert_array_equal(outcome.retained, ~left)


def test_without_lists_sessions_end_on_their_first_video(world):
    slates = np.full((len(world.catalog.traits.genre), world.config.slate_size), -1)
    outcome = run_arm(world, slates, 2, RATE, 7)
    assert len(outcome.impressions["step"]) > 0
    assert (outcome.impressions["step"] == 0).all()


def test_list_policy_shows_the_top_of_the_list_never_the_source(world):
    opening = LoggingPolicy(world.config, world.catalog, world.model.users.preference)
    slates = np.array([[1, 2, -1], [1, 0, 2], [-1, -1, -1]])
    policy = ListPolicy(opening, slates)
    targets, shown = policy.slate(np.array([0, 1, 2]), np.random.default_rng(0))
    assert shown.tolist() == [[True, True, False], [False, True, True], [False, False, False]]
    assert targets[shown].tolist() == [1, 2, 0, 2]


def test_slate_matrix_takes_the_best_ranks_and_refuses_unknown_videos():
    video_ids = np.array(["a", "b", "c", "d"])
    lists = pd.DataFrame(
        {
            "video_id": ["a", "a", "a", "c"],
            "rank": [3, 1, 2, 1],
            "related_video_id": ["d", "b", "c", "a"],
        }
    )
    slates = slate_matrix(lists, video_ids, 2)
    assert slates.tolist() == [[1, 2], [-1, -1], [0, -1], [-1, -1]]
    unknown = lists.assign(related_video_id=["d", "b", "x", "a"])
    with pytest.raises(ValueError, match="'a' -> 'x'"):
        slate_matrix(unknown, video_ids, 2)


def test_logged_session_rate_counts_the_days_each_user_was_there():
    truth = pd.DataFrame(
        {"sessions": [6, 2, 0], "activity": [2.0, 1.0, 0.5], "churn_day": [np.nan, 1.0, 0.0]}
    )
    # activity-days: 2 x 3 + 1 x 2 + 0.5 x 1 = 8.5
    assert logged_session_rate(truth, days=3) == pytest.approx(8 / 8.5)
