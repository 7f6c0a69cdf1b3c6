"""The simulated live experiment: a world rebuilt from its configuration and checked against the
data it made, and every arm (method x replicate seed, plus the A/A arm) replayed in it.

The arms' statistics are models/experiment.py's; pipelines/experiment.py is the step around this.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from models.experiment import arm_metrics
from pipelines.config import SyntheticConfig
from simulator.replay import logged_session_rate, run_arm
from simulator.synthetic import World, build_world

AA_ARM = "baseline (A/A)"

Arm = tuple[str, int, tuple[int, int]]  # arm, replicate, seed


def rebuild_world(synthetic: SyntheticConfig, seed: int) -> World:
    """The world `generate` made for this configuration (seed and size)."""
    return build_world(synthetic, synthetic.preset, np.random.default_rng(seed))


def same_videos(world: World, videos: pd.DataFrame) -> bool:
    """Whether `videos` (a data set's video table) are the world's: same ids and durations."""
    expected = world.catalog.videos[["video_id", "duration_s"]]
    found = videos[["video_id", "duration_s"]].sort_values("video_id", ignore_index=True)
    return len(found) == len(expected) and (
        (found["video_id"].to_numpy() == expected["video_id"].to_numpy()).all()
        and np.allclose(found["duration_s"].to_numpy(float), expected["duration_s"].to_numpy())
    )


def same_users(world: World, user_truth: pd.DataFrame) -> bool:
    """Whether the generator's user truth (raw/truth/users.parquet) is the world's."""
    return np.allclose(user_truth["activity"].to_numpy(float), world.activity)


def session_rate(world: World, user_truth: pd.DataFrame) -> float:
    """The log's sessions per activity-day, from the user truth the generator wrote."""
    return logged_session_rate(user_truth, world.size.days)


def experiment_arms(
    methods: Sequence[str], replicates: int, aa_replicates: int, seed: int
) -> list[Arm]:
    """Every method with seeds [seed, replicate], shared by all methods (common random numbers);
    then the A/A arm with `aa_replicates` other seeds [seed, replicates + i]."""
    return [
        (method, replicate, (seed, replicate))
        for method in methods
        for replicate in range(replicates)
    ] + [(AA_ARM, i, (seed, replicates + i)) for i in range(aa_replicates)]


def run_arms(
    world: World,
    slates: Mapping[str, np.ndarray],
    arms: Sequence[Arm],
    baseline: str,
    days: int,
    rate: float,
    progress: bool = True,
) -> pd.DataFrame:
    """Each arm replayed for `days` (the A/A arm shows the baseline's slates): one row per arm
    with its replicate, seed, metrics (models.experiment.arm_metrics), impressions and seconds."""
    rows = []
    bar = tqdm(arms, desc="experiment", unit="arm", disable=not progress)
    for arm, replicate, seed in bar:
        bar.set_postfix_str(f"{arm} #{replicate}")
        began = time.perf_counter()
        method = baseline if arm == AA_ARM else arm
        outcome = run_arm(world, slates[method], days, rate, seed)
        metrics = arm_metrics(outcome.impressions, outcome.retained)
        rows.append(
            {
                "arm": arm,
                "replicate": replicate,
                "seed": str(list(seed)),
                **metrics,
                "impressions": int((outcome.impressions["step"] >= 1).sum()),
                "seconds": time.perf_counter() - began,
            }
        )
    return pd.DataFrame(rows)
