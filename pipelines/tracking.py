"""MLflow tracking for the steps: by default SQLite plus local artifacts in the workspace.

Each step is a run; inside `main` the steps are nested runs of one parent pipeline run.
`mlflow.tracking_uri` in the configuration, or MLFLOW_TRACKING_URI, points at a server instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow

from pipelines.config import Config

# Read once: mlflow.set_tracking_uri writes this variable too, so later reads would see our own.
_ENVIRONMENT_URI = os.environ.get("MLFLOW_TRACKING_URI", "")


def configure(workspace: Path, experiment: str, tracking_uri: str = "") -> str:
    """Point MLflow at `tracking_uri`, else MLFLOW_TRACKING_URI as set when the program
    started, else the workspace's SQLite store; make sure the experiment exists, with its
    artifacts in the workspace; return the URI."""
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or _ENVIRONMENT_URI or f"sqlite:///{workspace / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(workspace / "mlartifacts").as_uri())
    mlflow.set_experiment(experiment)
    return uri


@contextmanager
def step_run(
    step: str, params: Mapping[str, object] | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A run for one step, nested under the active pipeline run if there is one."""
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name=step, nested=nested, tags={"step": step, **(tags or {})}) as run:
        if params:
            mlflow.log_params({key: _short(value) for key, value in params.items()})
        yield run


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def configure_for(config: Config) -> str:
    """`configure` with the run's configuration (workspace and `mlflow` section)."""
    return configure(config.workspace, config.mlflow.experiment, config.mlflow.tracking_uri)
