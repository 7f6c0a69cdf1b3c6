"""The synthetic catalog: series (IP groups) and genres whose videos share cast, staff, styles
and tags, blockbusters of every genre, and cold videos published in the log's last days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.config import SyntheticConfig, SyntheticSize
from simulator.behaviour import DAY_S, VideoTraits, draw_categories, genre_names


@dataclass
class Catalog:
    """The videos as arrays (position = video) beside their contract and truth tables."""

    traits: VideoTraits
    published_day: np.ndarray  # shown from the next day on; -1 for videos older than the log
    is_blockbuster: np.ndarray
    is_cold: np.ndarray
    videos: pd.DataFrame
    truth: pd.DataFrame


def make_catalog(
    config: SyntheticConfig, size: SyntheticSize, start: pd.Timestamp, rng: np.random.Generator
) -> Catalog:
    """Series (IP groups) of one genre share a cast, staff, a sub-style and tags, so that their
    profiles truly overlap; standalone videos draw theirs from their genre's pools."""
    cat, n, n_genres = config.catalog, size.videos, config.genres
    genres = np.array(genre_names(n_genres), dtype=object)
    series = _series_layout(config, n, rng)
    n_series = max(int(series.max()) + 1, 1)
    in_series, s = series >= 0, np.maximum(series, 0)
    series_genre = rng.integers(n_genres, size=n_series)
    genre = np.where(in_series, series_genre[s], rng.integers(n_genres, size=n))
    sub_style = np.where(
        in_series,
        rng.integers(cat.styles_per_genre, size=n_series)[s],
        rng.integers(cat.styles_per_genre, size=n),
    )
    pool_actors, pool_staff = n_genres * cat.actors_per_genre, n_genres * cat.staff_per_genre
    guest = np.where(
        rng.random(n) < cat.guest_share, _pool_picks(genre, cat.actors_per_genre, 1, rng)[:, 0], -1
    )
    actors = _either(
        in_series,
        np.c_[_members(s, pool_actors, cat.series_cast, cat.member_keep, rng), guest],
        _pool_picks(genre, cat.actors_per_genre, cat.standalone_cast, rng),
    )
    staff = _either(
        in_series,
        _members(s, pool_staff, cat.series_staff, cat.member_keep, rng),
        _pool_picks(genre, cat.staff_per_genre, cat.standalone_staff, rng),
    )
    pool_tags = n_genres * cat.tags_per_genre
    series_genre_tags = _pool_picks(series_genre, cat.tags_per_genre, cat.series_genre_tags, rng)
    video_tags = _pool_picks(genre, cat.tags_per_genre, cat.video_tags, rng)
    tags = _either(
        in_series,
        np.c_[
            _members(s, pool_tags, cat.series_tags, cat.member_keep, rng),
            series_genre_tags[s],
            video_tags,
        ],
        np.c_[_pool_picks(genre, cat.tags_per_genre, cat.standalone_tags, rng), video_tags],
    )
    series_ids = np.array([f"s{i:05d}" for i in range(n_series)], dtype=object)
    actor_names = [f"actor{i:05d}" for i in range(pool_actors + n_series * cat.series_cast)]
    staff_names = [f"staff{i:05d}" for i in range(pool_staff + n_series * cat.series_staff)]
    tag_names = [
        f"{genres[i // cat.tags_per_genre]}-{i % cat.tags_per_genre:02d}" for i in range(pool_tags)
    ]
    tag_names += [
        f"{series_ids[i // cat.series_tags]}-{i % cat.series_tags}"
        for i in range(n_series * cat.series_tags)
    ]

    series_type = draw_categories(cat.series_types, n_series, rng)
    video_type = np.where(in_series, series_type[s], draw_categories(cat.standalone_types, n, rng))
    video_type = np.where(
        in_series & (rng.random(n) >= cat.type_keep),
        draw_categories(cat.extra_types, n, rng),
        video_type,
    )
    low, high = (np.array([cat.durations_s[t][i] for t in video_type]) for i in (0, 1))
    duration = np.round(low + (high - low) * rng.random(n), 1)

    # Cold videos go round the last days, so some come out on the last one and have no events.
    cold = rng.choice(n, round(config.cold_share * n), replace=False)
    is_cold, published_day = np.zeros(n, dtype=bool), np.full(n, -1)
    is_cold[cold] = True
    window = min(config.cold_window_days, size.days)
    published_day[cold] = size.days - 1 - np.arange(len(cold)) % window
    age_s = np.where(
        is_cold, -(published_day + rng.random(n)) * DAY_S, rng.random(n) * cat.age_days * DAY_S
    )
    is_blockbuster = _blockbusters(config, genre, is_cold, rng)
    quality = rng.normal(0.0, cat.quality_sd, n)
    appeal = rng.normal(0.0, cat.appeal_sd, n) + cat.blockbuster_appeal * is_blockbuster

    video_ids = np.array([f"v{i:06d}" for i in range(n)], dtype=object)
    videos = pd.DataFrame(
        {
            "video_id": video_ids,
            "video_type": video_type.astype(object),
            "styles": [[g, f"{g}-style{k}"] for g, k in zip(genres[genre], sub_style, strict=True)],
            "actors": _lists(actors, actor_names),
            "staff": _lists(staff, staff_names),
            "tags": _lists(tags, tag_names),
            "duration_s": duration,
            "published_at": start - pd.to_timedelta(np.round(age_s), unit="s"),
        }
    )
    truth = pd.DataFrame(
        {
            "video_id": video_ids,
            "genre": genres[genre],
            "series_id": np.where(in_series, series_ids[s], None),
            "is_blockbuster": is_blockbuster,
            "is_cold": is_cold,
            "quality": quality,
            "appeal": appeal,
        }
    )
    traits = VideoTraits(
        genre=genre, series=series, quality=quality, appeal=appeal, duration_s=duration
    )
    return Catalog(traits, published_day, is_blockbuster, is_cold, videos, truth)


def _series_layout(config: SyntheticConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each video's series (-1: standalone), series sizes uniform in `series_size`, in random
    order so that a series is not a run of consecutive ids."""
    low, high = config.series_size
    in_series = round((1.0 - config.standalone_share) * n)
    sizes = rng.integers(low, high + 1, size=in_series // low + 1)
    series = np.repeat(np.arange(len(sizes)), sizes)[:in_series]
    return rng.permutation(np.r_[series, np.full(n - in_series, -1)])


def _blockbusters(
    config: SyntheticConfig, genre: np.ndarray, is_cold: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Blockbusters go round the genres in a random order: one each, then another each, ..."""
    count = max(config.blockbuster_min, round(config.blockbuster_share * len(genre)))
    is_blockbuster = np.zeros(len(genre), dtype=bool)
    order = rng.permutation(config.genres)
    for i in range(count):
        pool = np.flatnonzero((genre == order[i % config.genres]) & ~is_cold & ~is_blockbuster)
        if len(pool):
            is_blockbuster[rng.choice(pool)] = True
    return is_blockbuster


def _members(
    series: np.ndarray, offset: int, per_series: int, keep: float, rng: np.random.Generator
) -> np.ndarray:
    """(videos, per_series) ids of each video's series members, each kept with probability
    `keep`, at least one kept; -1 where dropped."""
    ids = offset + series[:, None] * per_series + np.arange(per_series)
    kept = rng.random(ids.shape) < keep
    nothing = np.flatnonzero(~kept.any(axis=1))
    kept[nothing, rng.integers(per_series, size=len(nothing))] = True
    return np.where(kept, ids, -1)


def _pool_picks(genre: np.ndarray, pool: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(len(genre), count) distinct ids from each row's genre pool of `pool` values."""
    picks = np.argsort(rng.random((len(genre), pool)), axis=1)[:, :count]
    return genre[:, None] * pool + picks


def _either(condition: np.ndarray, when: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
    """Row-wise choice between two id matrices of different widths (padded with -1)."""
    width = max(when.shape[1], otherwise.shape[1])
    out = np.full((len(condition), width), -1)
    out[condition, : when.shape[1]] = when[condition]
    out[~condition, : otherwise.shape[1]] = otherwise[~condition]
    return out


def _lists(ids: np.ndarray, names: list[str]) -> list[list[str]]:
    """Rows of ids to lists of names, without the -1 padding and without repeats."""
    return [list(dict.fromkeys(names[i] for i in row if i >= 0)) for row in ids.tolist()]
