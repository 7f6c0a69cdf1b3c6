"""What changes between two related tables: per video, overlap@N of the two top-N lists and the
rows that entered and left; over the catalog, the mean overlap (churn is 1 minus it).

Used by the promotion's churn gate (pipelines/promote.py) and the compare page
(pipelines/explorer.py). Plain pandas: tables in (video_id, rank, related_video_id), frames out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY = ["video_id", "related_video_id"]


@dataclass(frozen=True)
class Churn:
    """The challenger's lists against the champion's, over the champion's videos."""

    n: int
    overlap: float  # mean overlap@N; a video the challenger drops counts 0
    lists_changed: float  # share of the champion's videos whose top-N set is not the same
    videos: int  # the champion's videos

    @property
    def churn(self) -> float:
        """The share of the champion's list entries (top N) the challenger no longer shows."""
        return 1.0 - self.overlap


def top_rows(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The (video_id, related_video_id) rows ranked 1..n, ids as strings."""
    top = table.loc[table["rank"] <= n, KEY]
    return top.astype(str).drop_duplicates()


def overlap_by_video(a: pd.DataFrame, b: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per video of either table: in_a, in_b, size_a, size_b (list lengths up to n), common,
    overlap = common / max(size_a, size_b) (1 for the same set, 0 for a video only one table
    holds), changed (the two top-n sets differ). Sorted by overlap, then video_id."""
    rows_a, rows_b = top_rows(a, n), top_rows(b, n)
    sizes = pd.concat(
        [
            rows_a.groupby("video_id").size().rename("size_a"),
            rows_b.groupby("video_id").size().rename("size_b"),
        ],
        axis=1,
    ).fillna(0)
    common = rows_a.merge(rows_b, on=KEY).groupby("video_id").size()
    frame = sizes.assign(common=common.reindex(sizes.index).fillna(0)).astype(int)
    largest = frame[["size_a", "size_b"]].max(axis=1)
    frame["overlap"] = np.where(largest > 0, frame["common"] / largest.clip(lower=1), 1.0)
    frame["in_a"], frame["in_b"] = frame["size_a"] > 0, frame["size_b"] > 0
    same = (frame["common"] == frame["size_a"]) & (frame["common"] == frame["size_b"])
    frame["changed"] = ~same
    frame.index.name = "video_id"
    return frame.reset_index().sort_values(["overlap", "video_id"], kind="stable")


def entered_and_left(
    a: pd.DataFrame, b: pd.DataFrame, n: int, video_ids: list[str]
) -> dict[str, tuple[list[str], list[str]]]:
    """Per video of `video_ids`: the related ids in b's top n and not in a's (entered, b's order)
    and those in a's and not in b's (left, a's order)."""
    wanted = {str(v) for v in video_ids}
    ranked_a = a[a["video_id"].astype(str).isin(wanted) & (a["rank"] <= n)]
    ranked_b = b[b["video_id"].astype(str).isin(wanted) & (b["rank"] <= n)]
    lists_a = _lists(ranked_a)
    lists_b = _lists(ranked_b)
    answer = {}
    for video_id in video_ids:
        old, new = lists_a.get(str(video_id), []), lists_b.get(str(video_id), [])
        answer[str(video_id)] = (
            [v for v in new if v not in set(old)],
            [v for v in old if v not in set(new)],
        )
    return answer


def churn(champion: pd.DataFrame, challenger: pd.DataFrame, n: int) -> Churn:
    """The challenger's overlap@n with the champion, over the champion's videos."""
    frame = overlap_by_video(champion, challenger, n)
    held = frame[frame["in_a"]]
    if held.empty:
        return Churn(n, 1.0, 0.0, 0)
    return Churn(n, float(held["overlap"].mean()), float(held["changed"].mean()), len(held))


def histogram(overlaps: pd.Series, bins: int) -> list[tuple[float, float, int]]:
    """(low, high, videos) per bin of [0, 1]; the last bin holds 1.0."""
    counts, edges = np.histogram(overlaps.to_numpy(dtype=float), bins=bins, range=(0.0, 1.0))
    return [(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(bins)]


def _lists(ranked: pd.DataFrame) -> dict[str, list[str]]:
    ordered = ranked.sort_values(["video_id", "rank"], kind="stable")
    return {
        str(video_id): [str(v) for v in group["related_video_id"]]
        for video_id, group in ordered.groupby("video_id", sort=False)
    }
