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

# numpy may have started OpenBLAS before the variable above was set: limit it directly as well.
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(1, "blas")

# Fixtures that run (part of) the chain, train models or start a server: a test that needs one,
# directly or through another fixture, is marked slow (`make test-quick` skips it).
HEAVY_FIXTURES = frozenset(
    {
        "toy_pipeline",
        "toy_trained",
        "published_workspace",
        "published",
        "service",
        "evaluated",
        "experiment",
        "merged",
        "first",
        "redis_server",
        "applied_repo",
        "trained",
        "kuairand_dir",
        "toy_config",  # tests/pipelines/test_experiment.py: generate and validate
        "toy_oof",  # tests/models/test_coordinating.py: networks trained out of fold
        "small_oof",
        "repo",  # tests/pipelines/test_feature_store.py: `feast apply`
    }
)

# Tests that need none of those fixtures but take several seconds each on 2 cores (measured with
# --durations): by module file name, the test functions ("*": every test in the module). Each
# runs the input gate with its data docs, trains a network, starts worker processes or runs a
# command in a fresh Python. `make test` runs them; `make test-quick` skips them.
SLOW_TESTS = {
    # every test runs the input gate (Great Expectations and its data docs) on the toy world
    "test_validate.py": {"*"},
    "test_bring_your_own_data.py": {"*"},
    "test_cli.py": {"test_a_failed_gate_exits_3_and_says_what_failed"},
    "test_secrets.py": {"test_a_planted_password_is_in_no_log_pointer_or_artifact"},
    "test_feature_store.py": {"test_a_broken_definition_names_feast_s_complaint"},
    "test_coordinating.py": {"test_save_and_load_give_the_same_predictions"},
    "test_two_tower.py": {
        "test_same_seed_same_vectors",
        "test_bare_keras_fit_on_the_building_blocks",
    },
    # worker processes, each importing TensorFlow
    "test_parallel.py": {
        "test_results_and_callbacks_come_in_job_order",
        "test_a_failed_job_raises_its_error_in_the_caller",
        "test_a_failure_stops_the_fits_still_running",
    },
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        slow = SLOW_TESTS.get(item.path.name, ())
        if (
            HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
            or "*" in slow
            or getattr(item, "originalname", item.name) in slow
        ):
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # an xdist worker: see work_unit below
        for item in items:
            if "toy_pipeline" in item.fixturenames and work_unit(item.nodeid) != PIPELINE_UNIT:
                raise pytest.UsageError(
                    f"{item.nodeid} needs toy_pipeline: add its file to PIPELINE_FILES in "
                    "tests/conftest.py (one worker builds the toy pipeline for all of them)"
                )
        # Longest units first (a stable sort: the rest keep their order).
        items.sort(key=lambda item: -UNIT_SECONDS.get(work_unit(item.nodeid), 0))


# `make test` runs the suite on 2 xdist workers (`-n 2 --dist loadscope`), scheduled in work units
# (pytest_xdist_make_scheduler below; xdist's own loadgroup cannot group under pytest 9.2, whose
# node ids ignore the group suffix xdist adds). A unit runs on one worker, so that its fixtures
# are built once: every module that uses the toy pipeline (or toy_trained) is one unit; the
# modules of SPLIT_FILES (no module-scoped fixtures, long tests) have a unit per test; any other
# module is a unit. Units are handed out longest first (seconds measured on 2 cores with
# --durations, fixtures included), so that no long unit starts last while the other worker idles.
PIPELINE_UNIT = "toy_pipeline"
PIPELINE_FILES = frozenset(
    f"tests/pipelines/{name}.py"
    for name in (
        "test_broken_state",
        "test_candidates",
        "test_evaluate",
        "test_explorer",
        "test_features",
        "test_merge",
        "test_parallel",
        "test_serve",
        "test_train",
    )
)
SPLIT_FILES = frozenset(
    {
        "tests/pipelines/test_cli.py",
        "tests/pipelines/test_bring_your_own_data.py",
        "tests/pipelines/test_validate.py",  # 40-odd input gates of a few seconds each
    }
)
# Seconds of a 2-worker run with --durations (a loaded machine: about twice a quiet one's).
UNIT_SECONDS = {
    "tests/pipelines/test_promote.py": 900,  # one chain of module fixtures, then the chaos kills
    PIPELINE_UNIT: 800,
    "tests/pipelines/test_bring_your_own_data.py::test_the_walk_through_runs_to_a_served_list": 210,
    "tests/pipelines/test_cli.py::test_main_runs_the_chain_as_nested_mlflow_runs": 190,
    "tests/models/test_als.py": 110,
    "tests/pipelines/test_feature_store.py": 100,
    "tests/pipelines/test_online.py": 70,
    "tests/models/test_two_tower.py": 60,
    "tests/models/test_coordinating.py": 55,
    "tests/pipelines/test_cli.py::test_kuairand_ingest_then_validate": 31,
    "tests/pipelines/test_experiment.py": 25,
}


def work_unit(nodeid: str) -> str:
    """The work unit of a test, from its node id (see above)."""
    module = nodeid.split("::", 1)[0]
    if module in PIPELINE_FILES:
        return PIPELINE_UNIT
    if module in SPLIT_FILES:
        return nodeid.split("[", 1)[0]
    return module


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` with the work units above, handed out in the order of the collection
    (sorted longest first by pytest_collection_modifyitems in the workers)."""
    if config.getoption("dist", None) != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return WorkUnits(config, log)


@pytest.fixture(scope="session")
def config():
    from pipelines.config import load_config

    return load_config()


@pytest.fixture(scope="session")
def toy_world(config):
    """The synthetic world at the `toy` size (about a second to make), made once."""
    from simulator.synthetic import generate

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
def mlflow_store(tmp_path_factory, config, request):
    """One MLflow SQLite store for the session; every step run in the tests logs into it."""
    from pipelines import tracking

    folder = tmp_path_factory.mktemp("mlflow")
    uri = tracking.configure(folder, config.mlflow.experiment)
    request.session._mlflow_store = (folder, config.mlflow.experiment)
    return uri


@pytest.fixture(autouse=True)
def _tracking_back_to_the_session_store(request):
    """A test that points MLflow elsewhere (the CLI tests configure their own workspace) must
    not leave later tests logging to, or reading from, its store."""
    yield
    store = request.session.__dict__.get("_mlflow_store")
    if store is not None:
        from pipelines import tracking

        tracking.configure(store[0], store[1])


@pytest.fixture(scope="session")
def kuairand_dir(config) -> Path:
    """The shared KuaiRand-Pure folder beside the checkout; tests that need it skip without."""
    folder = (REPO / config.paths.kuairand).resolve()
    if not (folder / "log_standard_4_25_to_4_30_pure.csv.gz").exists():
        pytest.skip(f"KuaiRand-Pure is not at {folder}")
    return folder


@pytest.fixture(scope="session")
def toy_pipeline(tmp_path_factory, toy_world, mlflow_store):
    """The toy world through validate, features (Feast) and candidates in one workspace, once;
    later steps' tests start from it."""
    from types import SimpleNamespace

    from pipelines import workspace
    from pipelines.candidates import run_candidates
    from pipelines.config import load_config
    from pipelines.features import run_features
    from pipelines.validate import run_validate
    from simulator.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("toy_pipeline")
    config = load_config(overrides=[f"paths.workspace={root}", "synthetic.size=toy"])
    write_synthetic(toy_world, workspace.raw_dir(config))
    validated = run_validate(config)
    features = run_features(config)
    candidates = run_candidates(config, progress=False)
    return SimpleNamespace(
        config=config,
        world=toy_world,
        validated=validated,
        features=features,
        candidates=candidates,
    )


# Small enough to train in seconds; the defaults are exercised by `make demo`.
SMALL_MODELS = (
    "coordinating.hidden_units=[16, 8]",
    "coordinating.folds=2",
    "coordinating.epochs=3",
    "two_tower.tower_units=[32, 16]",
    "two_tower.embedding_dim=8",
    "two_tower.max_epochs=3",
    "two_tower.batch_size=128",
)


@pytest.fixture(scope="session")
def toy_trained(toy_pipeline):
    """Stage 2 trained once on the toy pipeline, with small networks."""
    from types import SimpleNamespace

    from pipelines.config import load_config
    from pipelines.train import run_train

    overrides = [
        f"paths.workspace={toy_pipeline.config.paths.workspace}",
        "synthetic.size=toy",
        # 3,000 events are too few for the network to be sure: route more, so that every
        # objective gets its models.
        "coordinating.threshold=0.3",
        "training.min_positives=3",
    ]
    config = load_config(overrides=[*overrides, *SMALL_MODELS])
    trained = run_train(config)
    return SimpleNamespace(config=config, trained=trained, pipeline=toy_pipeline)
