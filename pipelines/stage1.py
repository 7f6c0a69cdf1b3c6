"""Stage-1 helpers shared by the candidates and evaluate steps: the video profiles as the
features step published them, each video's clicks, and the gated candidate pairs over them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from models.candidates import GATED, CutStats, candidate_arrays, fill_arrays, shared_values
from models.profile import ProfileVocabulary, matrix_from_indices
from pipelines import feature_store
from pipelines.config import Config


def profiles_from_store(repo: Path):
    """The profile matrix (rows in the source's video order), the video ids and the vocabulary,
    as the features step published them."""
    profiles = feature_store.read_source(repo, "video_profile")
    # The source may hold several rows per video over time: the latest is the current profile.
    profiles = profiles.sort_values(feature_store.TIMESTAMP, kind="stable")
    profiles = profiles.drop_duplicates("video_id", keep="last").sort_values("video_id")
    vocabulary = ProfileVocabulary.from_frame(feature_store.read_source(repo, "vocabulary"))
    matrix = matrix_from_indices(list(profiles["profile_indices"]), vocabulary.n_columns)
    return matrix, profiles["video_id"].to_numpy().astype(str), vocabulary


def popularity(events: pd.DataFrame, video_ids: np.ndarray) -> np.ndarray:
    """Each video's clicks in `events` (0 for a video without any), in `video_ids` order: what
    breaks ties of content similarity at the cap of M candidates."""
    clicks = events.loc[events["clicked"] == 1, "video_id"].astype(str).value_counts()
    return pd.Series(video_ids).map(clicks).fillna(0).to_numpy(dtype=np.float64)


def find_candidates(
    matrix,
    video_ids: np.ndarray,
    vocabulary: ProfileVocabulary,
    config: Config,
    progress=True,
    tie_break: np.ndarray | None = None,
    cut: CutStats | None = None,
) -> pd.DataFrame:
    """Stage 1 over the profiles; ties at the cap go to the candidate with the higher
    `tie_break` (its training popularity), never to the id alone. Column `gated` is False on the
    pairs that may fill a source with fewer than `candidates.min_per_source` (its next
    `candidates.fill_pool` most similar, cosine below e but at least
    `candidates.fill_threshold`); stage 3 ranks them by score among the gated ones, or after
    them, or decides on validation (`candidates.fill_ranks`)."""
    settings = config.candidates
    with tqdm(
        total=matrix.shape[0], desc="candidates", unit="video", disable=not progress, leave=False
    ) as bar:
        gated = candidate_arrays(
            matrix,
            settings.threshold,
            settings.max_per_source,
            settings.block_size,
            progress=bar.update,
            tie_break=tie_break,
            cut=cut,
        )
    filled = fill_arrays(
        matrix,
        gated,
        settings.min_per_source,
        settings.fill_threshold,
        settings.fill_pool,
        settings.block_size,
        tie_break,
    )
    flags = np.concatenate([np.ones(len(gated[0]), bool), np.zeros(len(filled[0]), bool)])
    sources, targets, similarity = (
        np.concatenate(parts) for parts in zip(gated, filled, strict=True)
    )
    # Each source's gated pairs, then its filling ones (both already by similarity).
    order = np.lexsort((np.arange(len(sources)), ~flags, sources))
    sources, targets, similarity, flags = (
        sources[order],
        targets[order],
        similarity[order],
        flags[order],
    )
    return pd.DataFrame(
        {
            "source_video_id": video_ids[sources],
            "candidate_video_id": video_ids[targets],
            "content_similarity": similarity,
            "shared": shared_values(matrix, sources, targets, vocabulary.tokens()),
            GATED: flags,
        }
    )
