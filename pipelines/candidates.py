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

from models.candidates import CutStats, candidate_summary
from pipelines import tracking, workspace
from pipelines.config import Config
from pipelines.data.io import publish_folder, read_table, write_json
from pipelines.stage1 import find_candidates, popularity, profiles_from_store

log = logging.getLogger(__name__)


@dataclass
class Candidates:
    pairs: pd.DataFrame
    path: Path
    summary: dict[str, float]


def run_candidates(config: Config, progress: bool = True) -> Candidates:
    repo = workspace.feature_repo_dir(config)
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
                "cosine >= %s may fill them (stage 3 ranks them %s)",
                f"{summary['filled_sources']:,.0f}",
                settings.min_per_source,
                settings.threshold,
                f"{summary['filled_pairs']:,.0f}",
                settings.fill_threshold,
                {
                    "by_score": "by score among the gated ones",
                    "after_gated": "after the gated ones, best score first",
                }.get(settings.fill_ranks, "by score only where that lifts the validation lists"),
            )
        target = workspace.candidates_dir(config)
        with publish_folder(target) as scratch:
            pairs.to_parquet(scratch / workspace.PAIRS_FILE, index=False)
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
            target / workspace.PAIRS_FILE,
        )
        return Candidates(pairs, target / workspace.PAIRS_FILE, summary)


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
