"""The ingest step: bring a real data set to the contract in the workspace; today KuaiRand-Pure
(CC BY-SA 4.0, Gao et al., CIKM 2022), read where it lies and never copied into the repo.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow

from pipelines import tracking, workspace
from pipelines.config import Config, ConfigError
from pipelines.data.io import publish_folder
from pipelines.data.kuairand import write_kuairand

log = logging.getLogger(__name__)


def run_ingest(config: Config) -> dict[str, Path]:
    if config.data.dataset != "kuairand":
        raise ConfigError(
            f"data.dataset: ingest knows only 'kuairand', not {config.data.dataset!r} "
            "(for your own files set datasets.<name>.files and run validate)"
        )
    source = Path(config.paths.kuairand)
    with tracking.step_run("ingest", {"dataset": "kuairand", "source": source.resolve()}):
        started = time.perf_counter()
        target = workspace.raw_dir(config)
        with publish_folder(target) as scratch:
            paths = write_kuairand(source, config.dataset, scratch)
        mlflow.log_metric("seconds", time.perf_counter() - started)
        log.info("ingested KuaiRand-Pure from %s -> %s", source, target)
        return {name: target / Path(path).name for name, path in paths.items()}
