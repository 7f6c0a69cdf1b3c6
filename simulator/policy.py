"""The logging policy of the synthetic world: what its platform showed under a source (same
series, same genre, blockbusters, random) and which video opened each session.
"""

from __future__ import annotations

import numpy as np

from pipelines.config import SyntheticConfig
from simulator.catalog import Catalog

POLICY_SLOTS = ("series", "genre", "blockbuster", "random")


class LoggingPolicy:
    """What the log's platform showed. Under a source: slots of same-series, same-genre,
    blockbuster and random videos (`sessions.policy`); a session opens on a video of a genre the
    user likes, weighted by popularity, or on a blockbuster. Cold videos are shown seldom, and
    no video before the day after its publication."""

    def __init__(self, config: SyntheticConfig, catalog: Catalog, preference: np.ndarray):
        self.config, self.catalog, self.preference = config, catalog, preference
        traits = catalog.traits
        self.by_genre = np.argsort(traits.genre, kind="stable")
        bounds = np.searchsorted(traits.genre[self.by_genre], np.arange(config.genres + 1))
        self.genre_begin, self.genre_end = bounds[:-1], bounds[1:]
        self.by_series = np.argsort(traits.series, kind="stable")
        sorted_series = traits.series[self.by_series]
        self.series_start = np.searchsorted(sorted_series, traits.series, side="left")
        self.series_size = (
            np.searchsorted(sorted_series, traits.series, side="right") - self.series_start
        )
        self.place_in_series = np.empty_like(self.by_series)
        self.place_in_series[self.by_series] = np.arange(len(self.by_series))
        self.blockbusters = np.flatnonzero(catalog.is_blockbuster)
        slots = config.sessions.policy
        if set(slots) != set(POLICY_SLOTS):
            raise ValueError(f"synthetic.sessions.policy: expected the slots {POLICY_SLOTS}")
        self.slot_cum = np.cumsum([slots[name] for name in POLICY_SLOTS])
        self.slot_cum /= self.slot_cum[-1]

    def open_day(self, day: int) -> None:
        catalog, temperature = self.catalog, self.config.catalog.popularity_temperature
        available = catalog.published_day < day
        self.exposure = available * np.where(catalog.is_cold, self.config.cold_exposure, 1.0)
        popularity = self.exposure * np.exp(temperature * catalog.traits.appeal)
        self.genre_cum = np.r_[0.0, np.cumsum(popularity[self.by_genre])]
        self.any_cum = np.r_[0.0, np.cumsum(self.exposure)]

    def in_genre(self, genres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A video of each genre by popularity; anywhere when the genre has none to show."""
        begin, end = self.genre_begin[genres], self.genre_end[genres]
        base, total = self.genre_cum[begin], self.genre_cum[end] - self.genre_cum[begin]
        place = np.searchsorted(self.genre_cum, base + rng.random(len(genres)) * total, "right")
        picked = self.by_genre[np.clip(place - 1, begin, np.maximum(end - 1, 0))]
        return np.where(total > 0, picked, self.anywhere(len(genres), rng))

    def anywhere(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Any shown video, popular or not (cold ones seldom): exploration."""
        cum = self.any_cum
        return np.searchsorted(cum, rng.random(count) * cum[-1], "right").clip(1, len(cum) - 1) - 1

    def blockbuster(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if not len(self.blockbusters):
            return self.anywhere(count, rng)
        return self.blockbusters[rng.integers(len(self.blockbusters), size=count)]

    def same_series(self, sources: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another video of each source's series, or one of its genre where there is none to
        show (standalone source, unpublished, or a cold one not shown this time)."""
        size = self.series_size[sources]
        other = self.series_start[sources] + (rng.random(len(sources)) * (size - 1)).astype(int)
        other += other >= self.place_in_series[sources]
        target = self.by_series[np.minimum(other, len(self.by_series) - 1)]
        ok = (self.catalog.traits.series[sources] >= 0) & (size > 1)
        ok &= rng.random(len(sources)) < self.exposure[target]
        return np.where(ok, target, self.in_genre(self.catalog.traits.genre[sources], rng))

    def first_videos(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        taste = np.cumsum(self.preference[users], axis=1)
        genres = (taste < rng.random(len(users))[:, None] * taste[:, -1:]).sum(axis=1)
        picked = self.in_genre(np.minimum(genres, self.config.genres - 1), rng)
        opening_hit = rng.random(len(users)) < self.config.sessions.first_blockbuster_share
        return np.where(opening_hit, self.blockbuster(len(users), rng), picked)

    def slate(self, sources: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k = self.config.slate_size
        under = np.repeat(sources, k)
        slot = np.searchsorted(self.slot_cum, rng.random(len(under)), "right")
        options = np.stack(
            [
                self.same_series(under, rng),
                self.in_genre(self.catalog.traits.genre[under], rng),
                self.blockbuster(len(under), rng),
                self.anywhere(len(under), rng),
            ]
        )
        targets = options[np.minimum(slot, len(POLICY_SLOTS) - 1), np.arange(len(under))]
        targets = targets.reshape(len(sources), k)
        shown = targets != sources[:, None]
        for j in range(1, k):  # a video is shown once per slate
            shown[:, j] &= (targets[:, :j] != targets[:, j : j + 1]).all(axis=1)
        return targets, shown
