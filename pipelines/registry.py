"""Log a trained model into the active MLflow run and register it: models from code
(pipelines/model_code/), artifacts beside, each version tagged with its data and configuration.

Loading a model from code runs its stored `.py`: each version records the code's sha256 when it
is registered (tag `code_sha256`), and load_model refuses a version whose stored code differs.

The related-videos model's names live here too: its aliases (challenger, champion) and reading
a registered table back, which the merge, promote and publish steps share.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature

from pipelines.data.io import DataFileError
from pipelines.workspace import TABLE_FILE

MODEL_CODE = Path(__file__).resolve().parent / "model_code"
CODE_DIGEST_TAG = "code_sha256"
# What a registered model needs to load; the versions are the project's pins.
REQUIREMENTS = ("mlflow", "pandas", "numpy", "pyarrow")
MODEL_NAME = "related-videos"  # the registered related table (the merge step registers it)
CHALLENGER, CHAMPION = "challenger", "champion"  # its aliases


def register(
    name: str,
    code: str,
    artifacts: Mapping[str, str | Path],
    tags: Mapping[str, str],
    requirements: tuple[str, ...] = REQUIREMENTS,
    signature: ModelSignature | None = None,
) -> ModelVersion:
    """Log `pipelines/model_code/<code>.py` with `artifacts` as the model `name` in the active
    run, register a new version of `name` and tag it; returns the version."""
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(MODEL_CODE / f"{code}.py"),
        artifacts={key: str(path) for key, path in artifacts.items()},
        pip_requirements=[_pinned(package) for package in requirements],
        registered_model_name=name,
        signature=signature,
    )
    client = mlflow.MlflowClient()
    version = client.get_model_version(name, str(info.registered_model_version))
    code_digest = sha256_of(MODEL_CODE / f"{code}.py")  # the bytes log_model stored beside it
    for key, value in {**tags, CODE_DIGEST_TAG: code_digest}.items():
        client.set_model_version_tag(name, version.version, key, str(value))
    return client.get_model_version(name, version.version)


def load_model(name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    """The registered model `name` `version`, loaded only after its stored code file matched the
    sha256 recorded at registration; BrokenState (the command line's exit code 6) if it does
    not, or if no digest was recorded. The files are checked and loaded from one local copy."""
    import yaml

    from pipelines.broken import BrokenState

    uri = f"models:/{name}/{version}"
    recorded = mlflow.MlflowClient().get_model_version(name, version).tags.get(CODE_DIGEST_TAG)
    with tempfile.TemporaryDirectory() as folder:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder))
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
        code_file = local / Path(flavor.get("model_code_path") or "").name
        if not flavor.get("model_code_path") or not code_file.is_file():
            raise BrokenState(f"{uri}: no model code file among its files; register it again")
        found = sha256_of(code_file)
        if recorded != found:
            why = (
                "no code_sha256 was recorded when it was registered"
                if not recorded
                else f"its sha256 is {found[:12]}..., {recorded[:12]}... was recorded when it "
                "was registered"
            )
            raise BrokenState(
                f"{uri}: refusing to load it: its stored code file {code_file.name} cannot be "
                f"trusted ({why}); loading would run that code. Someone with write access to the "
                "artifact store may have changed it: restore the file, or register the model "
                "again (rerun the step that made it)."
            )
        return mlflow.pyfunc.load_model(str(local))


def sha256_of(path: str | Path) -> str:
    """The full sha256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Sections that do not change what the models or the table are: where things go, how they are
# evaluated, promoted and served. Two runs differing only there make the same table.
NOT_MODEL_SECTIONS = ("paths", "mlflow", "evaluation", "experiment", "promotion", "serving")


def config_digest(raw: Mapping) -> str:
    """A short, stable fingerprint of what a configuration makes (its model sections)."""
    model = {key: value for key, value in raw.items() if key not in NOT_MODEL_SECTIONS}
    return digest(model)


def digest(payload: object) -> str:
    """A short, stable fingerprint of any JSON-able value."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_digest(path: str | Path) -> str:
    return sha256_of(path)[:12]


def _pinned(package: str) -> str:
    from importlib.metadata import version

    return f"{package}=={version(package)}"


def item_vectors_signature(example_ids: list[str], k: int) -> ModelSignature:
    """Input: a `video_id` column; params: k (neighbours per video); output: the neighbours."""
    output = pd.DataFrame(
        {"video_id": ["a"], "rank": [1], "neighbour_video_id": ["b"], "cosine": [0.5]}
    )
    return infer_signature(pd.DataFrame({"video_id": example_ids}), output, params={"k": k})


def alias_version(client: mlflow.MlflowClient, alias: str) -> str | None:
    """The related-videos version holding `alias` (CHALLENGER, CHAMPION); None if none does."""
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:
        return None


def load_registered_table(version: str) -> pd.DataFrame:
    """The table registered as related-videos `version`, checked against its digest tag."""
    client = mlflow.MlflowClient()
    tags = client.get_model_version(MODEL_NAME, version).tags
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=folder
        )
        found = sorted(Path(local).rglob(TABLE_FILE))
        if not found:
            raise DataFileError(f"models:/{MODEL_NAME}/{version}: no {TABLE_FILE} among its files")
        if tags.get("table_digest") and file_digest(found[0]) != tags["table_digest"]:
            raise DataFileError(
                f"models:/{MODEL_NAME}/{version}: {TABLE_FILE} does not match its table_digest"
            )
        return pd.read_parquet(found[0])
