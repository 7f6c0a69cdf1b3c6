"""The generate step: make the synthetic world's videos, users and events (and the truth beside
them) for the `synthetic` data set, written atomically into the workspace.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow

from pipelines import tracking, workspace
from pipelines.config import Config, ConfigError
from pipelines.data.io import publish_folder
from simulator.synthetic import generate, write_synthetic

log = logging.getLogger(__name__)


def run_generate(config: Config, progress: bool = True) -> dict[str, Path]:
    if config.data.dataset != "synthetic":
        raise ConfigError(f"data.dataset: generate makes 'synthetic', not {config.data.dataset!r}")
    size = config.synthetic.preset
    params = {"size": config.synthetic.size, "seed": config.seed, **size.model_dump()}
    with tracking.step_run("generate", params):
        started = time.perf_counter()
        data = generate(config.synthetic, config.seed, size, progress=progress)
        target = workspace.raw_dir(config)
        with publish_folder(target) as scratch:
            write_synthetic(data, scratch)
        events = data.events
        mlflow.log_metrics(
            {
                "videos": len(data.videos),
                "users": len(data.users),
                "events": len(events),
                "click_rate": float(events["clicked"].mean()),
                "like_rate": float(events["liked"].mean()),
                "dislike_rate": float(events["disliked"].mean()),
                "seconds": time.perf_counter() - started,
            }
        )
        log.info(
            "generated %s videos, %s users, %s events in %.1f s -> %s",
            f"{len(data.videos):,}",
            f"{len(data.users):,}",
            f"{len(events):,}",
            time.perf_counter() - started,
            target,
        )
        return {name: target / f"{name}.parquet" for name in ("videos", "users", "events")}
