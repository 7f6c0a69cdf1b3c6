"""Stage 2 in worker processes: the same models, outputs and MLflow runs as in one process, and
the job pool's order, errors and progress lines."""

from __future__ import annotations

import logging
import time

import mlflow
import pandas as pd
import pytest

from pipelines import parallel
from tests.conftest import SMALL_MODELS


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    raise ValueError(f"job {x} failed")


@pytest.mark.parametrize("workers", [1, 2])
def test_results_and_callbacks_come_in_job_order(workers, caplog):
    seen = []
    with (
        caplog.at_level(logging.INFO, logger="pipelines.parallel"),
        parallel.JobPool(workers) as pool,
    ):
        results = pool.run(
            "squares", [(_square, (x,)) for x in range(5)], lambda i, r: seen.append((i, r))
        )
    assert results == [0, 1, 4, 9, 16]
    assert seen == list(enumerate(results))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("squares")]
    assert lines[-1].startswith("squares: 5/5 done in")
    assert "left" in lines[0] and "left" not in lines[-1]


def test_a_failed_job_raises_its_error_in_the_caller():
    with parallel.JobPool(2) as pool, pytest.raises(ValueError, match="job 1 failed"):
        pool.run("failing", [(_square, (0,)), (_fail, (1,))])


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_failure_stops_the_fits_still_running():
    """The pool does not wait for a long job once another has failed: its worker is stopped
    (the bound is far below the long job's 300 s)."""
    started = time.monotonic()
    with pytest.raises(ValueError, match="job 1 failed"), parallel.JobPool(2) as pool:
        pool.run("failing", [(_sleep, (300,)), (_fail, (1,))])
    assert time.monotonic() - started < 120


def test_worker_count_zero_is_one_per_core():
    assert parallel.worker_count(0) >= 1
    assert parallel.worker_count(3) == 3


def _fit(toy_pipeline, tmp_path, workers: int):
    from pipelines.config import load_config
    from pipelines.stage2 import fit_stage2
    from pipelines.workspace import read_events

    config = load_config(
        overrides=[
            f"paths.workspace={toy_pipeline.config.paths.workspace}",
            "synthetic.size=toy",
            "coordinating.threshold=0.3",
            "training.min_positives=3",
            f"training.workers={workers}",
            "training.parallel_min_events=0",
            *SMALL_MODELS,
        ]
    )
    folder = tmp_path / f"workers-{workers}"
    folder.mkdir()
    with mlflow.start_run(run_name=f"parallel-{workers}") as run:
        trained = fit_stage2(config, read_events(config), folder)
    return folder, trained, run.info.run_id


def _children(parent: str) -> list[tuple[str, dict, dict]]:
    client = mlflow.MlflowClient()
    experiment = client.get_run(parent).info.experiment_id
    runs = client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{parent}'", order_by=["start_time ASC"]
    )
    timing = ("seconds", "fit_seconds")
    return [
        (
            r.info.run_name,
            r.data.params,
            {  # NaN as a string: NaN == NaN is false
                k: "nan" if v != v else v
                for k, v in r.data.metrics.items()
                if not k.endswith(timing)
            },
        )
        for r in runs
    ]


def test_two_workers_give_what_one_gives(toy_pipeline, tmp_path):
    """The coordinating network's folds and the two-tower models fitted in two worker processes:
    every vector file, the network's outputs and each nested run's parameters and metrics are
    those of the fit in this process."""
    one, trained_one, run_one = _fit(toy_pipeline, tmp_path, 1)
    two, trained_two, run_two = _fit(toy_pipeline, tmp_path, 2)
    files = sorted(p.name for p in one.glob("*.parquet"))
    assert any(name.startswith("two-tower-") for name in files)
    assert files == sorted(p.name for p in two.glob("*.parquet"))
    for name in files:
        pd.testing.assert_frame_equal(pd.read_parquet(one / name), pd.read_parquet(two / name))
    pd.testing.assert_frame_equal(trained_one.routing, trained_two.routing)
    assert sorted(trained_one.versions) == sorted(trained_two.versions)
    runs_one, runs_two = _children(run_one), _children(run_two)
    assert [name for name, _, _ in runs_one] == [name for name, _, _ in runs_two]
    assert any(name.startswith("two-tower-") for name, _, _ in runs_one)
    assert runs_one == runs_two
