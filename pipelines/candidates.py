"""The candidates step (stage 1): read the video profiles from the feature store's sources,
keep the pairs whose content cosine reaches e (at most M per source, models/candidates.py),
attach the attribute values each pair shares, write them as Parquet and log their distribution.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

from models.candidates import (
    GATED,
    CutStats,
    candidate_arrays,
    candidate_summary,
    fill_arrays,
    shared_values,
)
from models.profile import ProfileVocabulary, matrix_from_indices
from pipelines import feature_store, tracking, workspace
from pipelines.config import Config
from pipelines.data.io import publish_folder, read_table, write_json
from pipelines.features import feature_repo_dir

log = logging.getLogger(__name__)
PAIRS_FILE = "candidate_pairs.parquet"


@dataclass
class Candidates:
    pairs: pd.DataFrame
    path: Path
    summary: dict[str, float]


def candidates_dir(config: Config) -> Path:
    return workspace.dataset_dir(config) / "candidates"


def read_candidate_pairs(config: Config) -> pd.DataFrame:
    return read_table(candidates_dir(config) / PAIRS_FILE)


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
    `candidates.fill_threshold`); every later stage ranks them after the gated ones."""
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


def run_candidates(config: Config, progress: bool = True) -> Candidates:
    repo = feature_repo_dir(config)
    settings = config.candidates
    params = {
        "threshold": settings.threshold,
        "max_per_source": settings.max_per_source,
        "top_k_values": settings.top_k_values,
        "block_size": settings.block_size,
        "min_per_source": settings.min_per_source,
        "fill_threshold": settings.fill_threshold,
        "fill_pool": settings.fill_pool,
        "few_candidates": config.merge.top_n,  # a source with fewer cannot fill its list
    }
    with tracking.step_run("candidates", params):
        started = time.perf_counter()
        matrix, video_ids, vocabulary = profiles_from_store(repo)
        events = read_table(workspace.validated_manifest(config).parent / "events.parquet")
        cut = CutStats()
        pairs = find_candidates(
            matrix, video_ids, vocabulary, config, progress, popularity(events, video_ids), cut
        )
        seconds = time.perf_counter() - started
        summary = {**candidate_summary(pairs, len(video_ids), config.merge.top_n), **cut.to_dict()}
        if cut.cut_in_tie:
            log.info(
                "candidates: the cap of %d fell inside a tie of similarity for %s of %s sources "
                "(%.1f%%); those ties went to the more clicked candidates",
                settings.max_per_source,
                f"{cut.cut_in_tie:,}",
                f"{cut.sources:,}",
                100 * cut.to_dict()["cut_in_tie_share"],
            )
        if summary["filled_sources"]:
            log.info(
                "candidates: %s sources had fewer than %d candidates at e = %s: %s pairs with "
                "cosine >= %s may fill them (ranked after the gated ones, best score first)",
                f"{summary['filled_sources']:,.0f}",
                settings.min_per_source,
                settings.threshold,
                f"{summary['filled_pairs']:,.0f}",
                settings.fill_threshold,
            )
        target = candidates_dir(config)
        with publish_folder(target) as scratch:
            pairs.to_parquet(scratch / PAIRS_FILE, index=False)
            write_json({"summary": summary, "params": params}, scratch / "summary.json")
            _plot_distribution(pairs, len(video_ids), settings.max_per_source, scratch)
        mlflow.log_metrics({**summary, "seconds": seconds})
        mlflow.log_artifact(str(target / "summary.json"), "candidates")
        mlflow.log_artifact(str(target / "pairs_per_source.png"), "candidates")
        log.info(
            "candidates: %s pairs over %s videos in %.1f s -> %s",
            f"{len(pairs):,}",
            f"{len(video_ids):,}",
            seconds,
            target / PAIRS_FILE,
        )
        return Candidates(pairs, target / PAIRS_FILE, summary)


def _plot_distribution(pairs: pd.DataFrame, n_videos: int, cap: int, folder: Path) -> None:
    per_source = pairs.groupby("source_video_id").size().to_numpy()
    counts = np.concatenate([per_source, np.zeros(n_videos - len(per_source), dtype=int)])
    figure = Figure(figsize=(10, 3.5))
    left, right = figure.subplots(1, 2)
    left.hist(counts, bins=min(cap + 1, 50), color="#4477aa")
    left.set(xlabel="candidates per source video", ylabel="videos", title="Pairs per source")
    right.hist(pairs["content_similarity"], bins=40, color="#228833")
    right.set(xlabel="content cosine", ylabel="pairs", title="Similarity of the kept pairs")
    figure.tight_layout()
    figure.savefig(folder / "pairs_per_source.png", dpi=100)
