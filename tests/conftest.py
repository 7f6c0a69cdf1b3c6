"""Shared fixtures: the configuration, one toy synthetic world per session, and an MLflow store.

Expensive things (the generator, the MLflow SQLite store) are made once per test session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def config():
    from pipelines.config import load_config

    return load_config()


@pytest.fixture(scope="session")
def toy_world(config):
    """The synthetic world at the `toy` size (about a second to make), made once."""
    from pipelines.data.synthetic import generate

    return generate(config.synthetic, config.seed, config.synthetic.sizes["toy"])


@pytest.fixture
def toy_tables(toy_world) -> dict[str, pd.DataFrame]:
    """Fresh copies of the toy world's three contract tables, free for a test to corrupt."""
    return {
        "videos": toy_world.videos.copy(),
        "users": toy_world.users.copy(),
        "events": toy_world.events.copy(),
    }


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory, config):
    """One MLflow SQLite store for the session; every step run in the tests logs into it."""
    from pipelines import tracking

    folder = tmp_path_factory.mktemp("mlflow")
    return tracking.configure(folder, config.mlflow.experiment)


@pytest.fixture(scope="session")
def kuairand_dir(config) -> Path:
    """The shared KuaiRand-Pure folder beside the checkout; tests that need it skip without."""
    folder = (REPO / config.paths.kuairand).resolve()
    if not (folder / "log_standard_4_25_to_4_30_pure.csv.gz").exists():
        pytest.skip(f"KuaiRand-Pure is not at {folder}")
    return folder
