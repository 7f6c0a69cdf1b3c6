"""What the synthetic world's planted truth says about a trained stage 2: does the coordinating
network drop accidental clicks, do the item vectors put a video (a cold one too) near its series.

Only synthetic data has a truth (raw/truth/). Training runs these checks only through its hook
(pipelines/hooks.py), which asks `TruthChecks.load` for them on the synthetic data set alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from models.vectors import ItemVectors, top_k_neighbours

NEIGHBOURS = 10
# Series videos whose neighbours are looked up (a seeded sample; every silent one besides):
# with all of them as queries this check was a third of the train step at 20,000 videos.
QUERIES = 2000


class TruthChecks:
    """The truth checks on one training set, as stage 2's training hook calls them; every metric
    is named `truth_<name>`."""

    def __init__(self, truth: Mapping[str, pd.DataFrame], events: pd.DataFrame, seed: int):
        self.truth = truth
        self.seed = seed
        self.events_per_video = events.groupby("video_id").size().to_dict()

    @classmethod
    def load(cls, raw_dir: Path, events: pd.DataFrame, seed: int) -> TruthChecks | None:
        """The checks on the training set `events`, or None without a truth in `raw_dir`."""
        truth = load_truth(raw_dir)
        return None if truth is None else cls(truth, events, seed)

    def routing(
        self, events: pd.DataFrame, p_click: np.ndarray, threshold: float
    ) -> dict[str, float]:
        """The network's routing of accidental clicks (routing_of_accidental_clicks)."""
        found = routing_of_accidental_clicks(self.truth["events"], events, p_click, threshold)
        return {f"truth_{name}": value for name, value in found.items()}

    def item_vectors(self, vectors: ItemVectors) -> dict[str, float]:
        """Series videos near their series mates in `vectors` (series_neighbours)."""
        found = series_neighbours(
            vectors, self.truth["videos"], self.events_per_video, seed=self.seed
        )
        return {f"truth_{name}": value for name, value in found.items()}


def load_truth(raw_dir: Path) -> dict[str, pd.DataFrame] | None:
    folder = raw_dir / "truth"
    if not (folder / "videos.parquet").exists():
        return None
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in ("videos", "events")}


def routing_of_accidental_clicks(
    truth_events: pd.DataFrame, events: pd.DataFrame, p_click: np.ndarray, threshold: float
) -> dict[str, float]:
    """Share of accidental and of genuine clicks the network drops (p_click <= threshold).
    `events` and `p_click` are aligned; truth rows are matched on (user_id, video_id, ts)."""
    frame = events[["user_id", "video_id", "ts", "clicked"]].assign(p_click=p_click)
    frame = frame.merge(
        truth_events[["user_id", "video_id", "ts", "accidental"]],
        on=["user_id", "video_id", "ts"],
        how="left",
    )
    clicks = frame[frame["clicked"] == 1]
    accidental = clicks["accidental"].fillna(0).to_numpy() == 1
    dropped = clicks["p_click"].to_numpy() <= threshold
    return {
        "accidental_clicks": int(accidental.sum()),
        "accidental_dropped": float(dropped[accidental].mean()) if accidental.any() else np.nan,
        "genuine_dropped": float(dropped[~accidental].mean()) if (~accidental).any() else np.nan,
    }


def series_neighbours(
    vectors: ItemVectors,
    truth_videos: pd.DataFrame,
    events_per_video: Mapping[str, int],
    queries: int = QUERIES,
    seed: int = 0,
) -> dict[str, float]:
    """Share of a series video's top-10 neighbours from its own series, against chance, over a
    seeded sample of at most `queries` series videos; and for every series video without any
    event, how often the nearest neighbour is a series mate."""
    series = truth_videos.set_index("video_id")["series_id"].reindex(vectors.video_ids)
    labels = series.to_numpy(dtype=object)
    in_series = series.notna().to_numpy()
    rows = np.flatnonzero(in_series)
    if len(rows) == 0 or len(vectors) <= NEIGHBOURS:
        return {}
    silent = np.array([events_per_video.get(v, 0) == 0 for v in vectors.video_ids[rows]])
    sample = np.zeros(len(rows), dtype=bool)
    sample[np.random.default_rng(seed).permutation(len(rows))[:queries]] = True
    asked = sample | silent
    top = top_k_neighbours(vectors, vectors.video_ids[rows[asked]], NEIGHBOURS)
    same = labels[top] == labels[rows[asked]][:, None]
    sizes = series[in_series].value_counts()
    chance = float((sizes * (sizes - 1)).sum() / (in_series.sum() * (len(vectors) - 1)))
    result = {
        "series_share_at_10": float(same[sample[asked]].mean()),
        "series_share_chance": chance,
    }
    if silent.any():
        result["silent_videos"] = int(silent.sum())
        result["silent_nearest_is_series_mate"] = float(same[silent[asked], 0].mean())
    return result
