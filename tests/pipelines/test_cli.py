"""The command line end to end, in-process: exit codes, messages, and the chain as MLflow runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.cli import EXIT_CONFIG, EXIT_DATA, EXIT_GATE, main
from pipelines.data.io import read_table, write_table
from tests.conftest import SMALL_MODELS


def test_help_answers(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "generate" in capsys.readouterr().out


def test_a_configuration_error_names_the_key(tmp_path, capsys):
    code = main(["--workspace", str(tmp_path), "--set", "merge.top_nn=1", "validate"])
    assert code == EXIT_CONFIG
    assert "merge.top_nn: unknown key" in capsys.readouterr().err


def test_missing_input_names_the_file(tmp_path, capsys):
    code = main(["--workspace", str(tmp_path), "validate"])
    assert code == EXIT_DATA
    assert "videos.parquet: no such file" in capsys.readouterr().err


@pytest.mark.slow  # the whole chain, trained: not in `make test-quick`
def test_main_runs_the_chain_as_nested_mlflow_runs(tmp_path, capsys):
    workspace = tmp_path / "workspace"
    small = [item for override in SMALL_MODELS for item in ("--set", override)]
    code = main(["--workspace", str(workspace), "--size", "toy", *small, "demo"])
    out = capsys.readouterr().out
    assert code == 0
    assert "mlflow ui --backend-store-uri" in out and "feast ui" in out
    # What each model took (a two-tower, or the network's routing, the evaluation found
    # adding nothing is not trained).
    summary = workspace / "data/synthetic/evaluation/evaluation.json"
    network = json.loads(summary.read_text())["routing"]["kept"]
    assert ("coordinating-network" in out) == network and "als-click v1" in out
    assert "output gate passed" in out and "offline evaluation" in out
    assert "promotion: related-videos v1 approved: no champion yet" in out
    assert "online: related-videos v1 published" in out
    assert "evaluation/report.html" in out and "related-videos serve" in out
    events = read_table(workspace / "data/synthetic/validated/events.parquet")
    assert len(events) > 1000
    client = MlflowClient(f"sqlite:///{workspace.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("related-videos")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(run for run in runs if run.info.run_name == "pipeline")
    children = {
        run.info.run_name: run
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {
        "generate",
        "validate",
        "features",
        "candidates",
        "train",
        "merge",
        "evaluate",
        "promote",
        "publish",
    }
    assert "related videos of v" in out and " shares " in out  # live lists with reasons
    models = [
        run.info.run_name
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == children["train"].info.run_id
    ]
    assert ("coordinating-network" in models) == network and "als-click" in models
    assert children["validate"].data.metrics["events_rows"] == len(events)
    assert children["validate"].data.tags["gate"] == "passed"
    artifacts = [
        a.path for a in client.list_artifacts(children["validate"].info.run_id, "input_gate")
    ]
    assert "input_gate/index.html" in artifacts


def test_a_failed_gate_exits_3_and_says_what_failed(tmp_path, capsys, toy_tables):
    toy_tables["events"].loc[0, "shared"] = 9
    overrides = []
    for name, frame in toy_tables.items():
        path = write_table(frame, tmp_path / "input" / f"{name}.csv")
        overrides += ["--set", f"datasets.synthetic.files.{name}={path}"]
    code = main(["--workspace", str(tmp_path / "workspace"), *overrides, "validate"])
    err = capsys.readouterr().err
    assert code == EXIT_GATE
    assert "input gate FAILED" in err and "events.shared: flag is 0 or 1" in err
    assert "e.g. 9" in err and "Nothing was written downstream." in err
    assert f"events: {tmp_path / 'input' / 'events.csv'}" in err  # the file is named too
    assert not (tmp_path / "workspace/data/synthetic/validated").exists()


@pytest.mark.kuairand
@pytest.mark.slow
def test_kuairand_ingest_then_validate(tmp_path, kuairand_dir, capsys):
    common = [
        "--workspace",
        str(tmp_path),
        "--dataset",
        "kuairand",
        "--set",
        f"paths.kuairand={kuairand_dir}",
    ]
    assert main([*common, "ingest"]) == 0
    assert main([*common, "validate"]) == 0
    out = capsys.readouterr().out
    assert "input gate passed" in out and "an event is not repeated" in out
    events = read_table(tmp_path / "data/kuairand/validated/events.parquet")
    assert len(events) == 94_784
    assert isinstance(events["ts"].dtype, pd.DatetimeTZDtype)
