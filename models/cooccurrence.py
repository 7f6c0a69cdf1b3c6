"""Co-click evidence of candidate pairs: SAR-style Jaccard of the users who clicked each video,
computed sparse and blocked at the given pairs only (never a videos x videos matrix).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse


def pair_jaccard(
    sources: np.ndarray,
    candidates: np.ndarray,
    events: pd.DataFrame,
    block_size: int = 2048,
) -> np.ndarray:
    """Per pair (sources[k], candidates[k]): c / (users(i) + users(j) - c), with c the distinct
    users who clicked both in `events` (user_id, video_id, clicked); 0 where none did."""
    return pair_cooccurrence(sources, candidates, events, block_size)[1]


def pair_cooccurrence(
    sources: np.ndarray,
    candidates: np.ndarray,
    events: pd.DataFrame,
    block_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: (c, Jaccard), c the distinct users who clicked both videos in `events`.

    For block_size sources at a time, their rows of the binary videos x users click matrix times
    its users x candidates part, read at the pairs only. (Row-wise products of the two videos'
    user columns cost users(i) + users(j) per pair: on a popular candidate, shared by many
    sources, far more.)"""
    source_ids = pd.Series(np.asarray(sources)).astype(str)
    candidate_ids = pd.Series(np.asarray(candidates)).astype(str)
    clicked = events.loc[events["clicked"] == 1, ["user_id", "video_id"]].drop_duplicates()
    user_rows, users = pd.factorize(clicked["user_id"])  # hashing: np.unique sorts strings
    video_cols, videos = pd.factorize(clicked["video_id"].astype(str))
    by_video = sparse.csr_matrix(
        (np.ones(len(clicked), dtype=np.int64), (video_cols, user_rows)),
        shape=(len(videos), len(users)),
    )
    degree = np.diff(by_video.indptr).astype(np.float64)  # distinct users per video
    video_index = pd.Index(videos)
    source = video_index.get_indexer(source_ids)
    target = video_index.get_indexer(candidate_ids)
    rows = np.flatnonzero((source >= 0) & (target >= 0))  # a video nobody clicked shares no user
    rows = rows[np.argsort(source[rows], kind="stable")]
    jaccard = np.zeros(len(source_ids))
    counts = np.zeros(len(source_ids))
    if not len(rows):
        return counts, jaccard
    unique_sources, source_of_row = np.unique(source[rows], return_inverse=True)
    targets, target_of_row = np.unique(target[rows], return_inverse=True)
    users_by_target = by_video[targets].T.tocsr()
    bounds = np.searchsorted(
        source_of_row, np.arange(0, len(unique_sources) + block_size, block_size)
    )
    for block, (first, last) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if first == last:
            continue
        offset = block * block_size
        shared = (by_video[unique_sources[offset : offset + block_size]] @ users_by_target).tocsr()
        count = shared[source_of_row[first:last] - offset, target_of_row[first:last]]
        count = np.asarray(count, dtype=np.float64).ravel()
        i, j = source[rows[first:last]], target[rows[first:last]]
        jaccard[rows[first:last]] = count / (degree[i] + degree[j] - count)
        counts[rows[first:last]] = count
    return counts, jaccard
