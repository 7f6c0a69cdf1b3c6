"""The train step on the toy pipeline: every model is a nested MLflow run, registered with its
version tags; item vectors are written for the merge and load back through the registry."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.vectors import ItemVectors

TAGS = ("dataset", "data_digest", "config_digest", "training_until", "pipeline_run_id")

UI_START_S = 300


def _model_names(config) -> list[str]:
    names = ["coordinating-network"]
    for objective in config.objective_names():
        names += [f"als-{objective}", f"two-tower-{objective}"]
    return names


def test_every_objective_gets_both_models(toy_trained):
    assert set(toy_trained.trained.versions) == set(_model_names(toy_trained.config))


def test_the_registry_holds_every_model_version_and_tag(toy_trained):
    client = mlflow.MlflowClient()
    for name, version in toy_trained.trained.versions.items():
        found = client.get_model_version(name, version)
        missing = [tag for tag in TAGS if tag not in found.tags]
        assert not missing, f"{name} v{version} lacks tags {missing}"
        assert found.tags["dataset"] == "synthetic"
        if name != "coordinating-network":
            assert found.tags["objective"] == name.split("-")[-1]
            assert found.tags["engine"] in ("implicit", "spark", "keras")
        registered = client.search_model_versions(f"name = '{name}'")
        assert version in {str(v.version) for v in registered}


def test_each_model_is_a_nested_run_of_the_train_step(toy_trained):
    train_runs = mlflow.search_runs(filter_string="tags.step = 'train'", output_format="list")
    train = train_runs[0]
    children = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{train.info.run_id}'", output_format="list"
    )
    assert {run.info.run_name for run in children} == set(_model_names(toy_trained.config))
    for run in children:
        if run.info.run_name.startswith(("als-", "two-tower-")):
            assert "auc_holdout_pooled" in run.data.metrics
    network = next(r for r in children if r.info.run_name == "coordinating-network")
    assert "routed_share_click" in network.data.metrics
    assert network.data.params["folds"] == "2"


def test_two_tower_vectors_cover_the_whole_catalog(toy_trained):
    folder = toy_trained.trained.folder
    vectors = ItemVectors.from_frame(
        pd.read_parquet(folder / "two-tower-click.item_vectors.parquet")
    )
    assert set(vectors.video_ids) == set(toy_trained.pipeline.world.videos["video_id"])
    als = ItemVectors.from_frame(pd.read_parquet(folder / "als-click.item_vectors.parquet"))
    assert 0 < len(als) <= len(vectors)


def test_a_registered_model_loads_and_answers_neighbours(toy_trained):
    version = toy_trained.trained.versions["als-click"]
    model = mlflow.pyfunc.load_model(f"models:/als-click/{version}")
    folder = toy_trained.trained.folder
    vectors = ItemVectors.from_frame(pd.read_parquet(folder / "als-click.item_vectors.parquet"))
    video = vectors.video_ids[0]
    answer = model.predict(pd.DataFrame({"video_id": [video, "no-such-video"]}), params={"k": 3})
    expected = vectors.neighbours(video, 3)
    assert list(answer["neighbour_video_id"]) == list(expected["video_id"])
    assert np.allclose(answer["cosine"], expected["cosine"])


def test_coordinating_outputs_are_kept_for_the_merge(toy_trained):
    outputs = pd.read_parquet(toy_trained.trained.folder / "coordinating_outputs.parquet")
    assert len(outputs) == len(toy_trained.pipeline.world.events)
    for objective in toy_trained.config.objective_names():
        assert outputs[f"p_{objective}"].between(0, 1).all()


def test_held_out_events_are_kept_apart_for_the_merge(toy_trained):
    """One draw per event held out of every model: the merge calibrates on those events alone,
    with the videos' counts among the others (and among all, for the published table)."""
    folder = toy_trained.trained.folder
    heldout = pd.read_parquet(folder / "heldout_events.parquet")
    fitted = pd.read_parquet(folder / "video_priors.parquet")
    every = pd.read_parquet(folder / "video_priors_all.parquet")
    events = pd.read_parquet(folder / "coordinating_outputs.parquet")
    share = toy_trained.config.training.holdout_share
    assert 0.5 * share < len(heldout) / len(events) < 1.5 * share
    assert fitted["events"].sum() + len(heldout) == every["events"].sum() == len(events)
    names = toy_trained.config.objective_names()
    assert {f"label_{name}" for name in names} <= set(heldout.columns)
    for name in names:
        assert (
            fitted[f"positives_{name}"].sum() + heldout[f"label_{name}"].sum()
            == every[f"positives_{name}"].sum()
        )


def test_without_validated_tables_the_step_names_the_folder(tmp_path, mlflow_store):
    from pipelines.config import load_config
    from pipelines.data.io import DataFileError
    from pipelines.train import run_train

    with pytest.raises(DataFileError, match="validated"):
        run_train(load_config(overrides=[f"paths.workspace={tmp_path}"]))


@pytest.mark.slow
def test_the_mlflow_ui_over_the_sqlite_store_shows_runs_and_versions(toy_trained, tmp_path):
    """`mlflow ui` on the store the steps wrote: its REST API (what the UI pages read) lists the
    train run, its nested model runs and every registered version."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.parse
    import urllib.request
    from pathlib import Path

    def get(url: str, params: dict | None = None):
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(url + query, timeout=10) as answer:
            return answer.read().decode()

    def post(url: str, payload: dict):
        request = urllib.request.Request(
            url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    uri = mlflow.get_tracking_uri()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # A wait for start-up, not a timing check: on a loaded 2-core machine `mlflow ui` took
        # up to three minutes to answer its first request.
        deadline = time.monotonic() + UI_START_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"mlflow ui exited with code {server.returncode} before answering")
            try:
                get(f"{base}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow ui did not answer within {UI_START_S} s")
        assert "MLflow" in get(base)
        api = f"{base}/ajax-api/2.0/mlflow"
        experiment = json.loads(
            get(f"{api}/experiments/get-by-name", {"experiment_name": "related-videos"})
        )["experiment"]
        runs = post(
            f"{api}/runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000},
        )["runs"]
        by_id = {run["info"]["run_id"]: run for run in runs}
        tags = {
            run_id: {t["key"]: t["value"] for t in run["data"].get("tags", [])}
            for run_id, run in by_id.items()
        }
        train = [r for r, t in tags.items() if t.get("step") == "train"]
        assert train
        nested = {
            by_id[r]["info"]["run_name"]
            for r, t in tags.items()
            if t.get("mlflow.parentRunId") == train[0]
        }
        assert {"coordinating-network", "als-click", "two-tower-click"} <= nested
        versions = json.loads(get(f"{api}/model-versions/search", {"max_results": 1000}))
        versions = versions["model_versions"]
        shown = {(v["name"], v["version"]) for v in versions}
        assert set(toy_trained.trained.versions.items()) <= shown
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_production_fit_skips_the_two_towers_the_evaluation_left_out(tmp_path, caplog):
    """Two-tower models the evaluation's fusion did not use are not trained again: those whose
    validation gain was below weights.two_tower_min_gain, those that did not lift the validation
    lists, those whose cosine the calibration left
    out, and those of an objective with too few held-out positive pairs to calibrate (its score
    was the candidate's rate, no cosine). An
    evaluation of another configuration or data decides nothing."""
    import json

    from pipelines import registry, workspace
    from pipelines.config import load_config
    from pipelines.train import evaluated_two_tower_drops

    config = load_config(overrides=[f"paths.workspace={tmp_path}"])
    assert evaluated_two_tower_drops(config) == []  # no evaluation yet
    manifest = workspace.validated_dir(config) / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    calibrated = {"sides": {"als": {}, "two_tower": {}}, "prior": {}, "use_two_tower": True}
    als_only = {**calibrated, "sides": {"als": {}}}  # the tower's cosine did not help
    summary = {
        "config_digest": registry.config_digest(config.raw),
        "data_digest": registry.file_digest(manifest),
        "fusion": {
            "two_tower": {
                "click": {"with": 0.80, "without": 0.79, "gain": 0.01},
                "play_time": {"with": 0.80, "without": 0.799, "gain": 0.001},
                "share": {
                    "with": 0.8,
                    "without": 0.7,
                    "gain": 0.1,
                    "list_gain": 0.0,
                    "kept": False,
                },
            },
            "calibrations": {
                "click": calibrated,
                "play_time": calibrated,
                "like": als_only,
                "share": calibrated,
                "dislike": None,
            },
        },
    }
    path = workspace.evaluation_dir(config) / workspace.EVALUATION_SUMMARY
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(summary))
    with caplog.at_level("INFO", logger="pipelines.train"):
        assert evaluated_two_tower_drops(config) == ["dislike", "like", "play_time", "share"]
    assert "too few held-out positive pairs" in caplog.text
    assert "did not raise the chance" in caplog.text
    assert "did not lift the validation lists" in caplog.text
    path.write_text(json.dumps({**summary, "data_digest": "other data"}))
    assert evaluated_two_tower_drops(config) == []


def test_the_production_fit_routes_as_the_evaluation_decided(tmp_path, caplog):
    """With training.routing auto, the production fit trains the coordinating network unless
    the evaluation of this configuration and data found its routing lifting nothing; always
    and never decide alone."""
    import json

    from pipelines import registry, workspace
    from pipelines.config import load_config
    from pipelines.train import evaluated_routing

    config = load_config(overrides=[f"paths.workspace={tmp_path}"])
    assert evaluated_routing(config)  # no evaluation yet: the paper's
    manifest = workspace.validated_dir(config) / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    summary = {
        "config_digest": registry.config_digest(config.raw),
        "data_digest": registry.file_digest(manifest),
        "routing": {"mode": "auto", "kept": False, "gain": -0.001, "error": 0.002},
    }
    path = workspace.evaluation_dir(config) / workspace.EVALUATION_SUMMARY
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(summary))
    with caplog.at_level("INFO", logger="pipelines.train"):
        assert not evaluated_routing(config)
    assert "coordinating network not trained" in caplog.text
    always = load_config(overrides=[f"paths.workspace={tmp_path}", "training.routing=always"])
    assert evaluated_routing(always)
    never = load_config(overrides=[f"paths.workspace={tmp_path}", "training.routing=never"])
    assert not evaluated_routing(never)
    kept = {**summary, "routing": {"mode": "auto", "kept": True, "gain": 0.01, "error": 0.001}}
    path.write_text(json.dumps(kept))
    assert evaluated_routing(config)
    path.write_text(json.dumps({**summary, "data_digest": "other data"}))
    assert evaluated_routing(config)
