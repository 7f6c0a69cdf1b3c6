"""List churn: overlap@N between two related tables (pipelines/list_diff.py), and the promotion's
churn gate: a challenger that replaces more of the champion's lists than promotion.max_churn is
refused, then accepted with --accept-churn; its overlap goes to MLflow and into the decision."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from pipelines import list_diff, tracking
from pipelines.cli import build_parser
from pipelines.cli import main as cli_main
from pipelines.config import ConfigError, load_config
from pipelines.registry import CHALLENGER, CHAMPION, MODEL_NAME
from pipelines.workspace import TABLE_FILE

N = 5
VIDEOS = [f"v{i:03d}" for i in range(10)]


def table_of(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [
        (video_id, rank, related, 1.0 / rank, "why")
        for video_id, related_ids in lists.items()
        for rank, related in enumerate(related_ids, start=1)
    ]
    return pd.DataFrame(rows, columns=["video_id", "rank", "related_video_id", "score", "reason"])


def champion_lists() -> dict[str, list[str]]:
    return {v: [f"{v}-r{k}" for k in range(N)] for v in VIDEOS}


def challenger_lists(replaced: int) -> dict[str, list[str]]:
    """The champion's lists with every entry of the first `replaced` videos replaced."""
    lists = champion_lists()
    for v in VIDEOS[:replaced]:
        lists[v] = [f"{v}-new{k}" for k in range(N)]
    return lists


def test_overlap_by_video_counts_shared_entries_of_the_top_n():
    a = table_of({"x": ["a", "b", "c", "d"], "y": ["a", "b"], "gone": ["a"]})
    b = table_of({"x": ["b", "a", "e", "f"], "y": ["b", "a"], "new": ["c"]})
    frame = list_diff.overlap_by_video(a, b, n=3).set_index("video_id")
    assert frame.loc["x", "overlap"] == pytest.approx(2 / 3)  # top 3: abc against bae
    assert frame.loc["y", "overlap"] == 1.0 and not frame.loc["y", "changed"]  # order aside
    assert frame.loc["gone", "overlap"] == 0.0 and not frame.loc["gone", "in_b"]
    assert frame.loc["new", "overlap"] == 0.0 and not frame.loc["new", "in_a"]
    assert list(frame.index[:2]) == ["gone", "new"]  # most changed first
    moves = list_diff.entered_and_left(a, b, 3, ["x", "gone"])
    assert moves == {"x": (["e"], ["c"]), "gone": ([], ["a"])}
    assert list_diff.histogram(frame["overlap"], 2) == [(0.0, 0.5, 2), (0.5, 1.0, 2)]


def test_churn_is_over_the_champions_videos():
    lists = list_diff.churn(table_of(champion_lists()), table_of(challenger_lists(4)), N)
    assert (lists.overlap, lists.churn, lists.lists_changed, lists.videos) == pytest.approx(
        (0.6, 0.4, 0.4, 10)
    )
    # A video the challenger adds does not count; one it drops counts as fully replaced.
    more = {**champion_lists(), "extra": ["a"]}
    fewer = {v: related for v, related in champion_lists().items() if v != VIDEOS[0]}
    assert list_diff.churn(table_of(champion_lists()), table_of(more), N).churn == 0.0
    assert list_diff.churn(table_of(champion_lists()), table_of(fewer), N).churn == pytest.approx(
        0.1
    )


def test_max_churn_is_checked_when_the_configuration_loads():
    assert load_config().promotion.max_churn is None  # off by default
    assert load_config(overrides=["promotion.max_churn=0.25"]).promotion.max_churn == 0.25
    for value in ("1.5", "-0.1", "yes", "'a lot'"):
        with pytest.raises(ConfigError, match=r"^promotion\.max_churn: "):
            load_config(overrides=[f"promotion.max_churn={value}"])
    with pytest.raises(ConfigError, match=r"^serving\.explorer\.search_results: "):
        load_config(overrides=["serving.explorer.search_results=0"])


def test_the_accept_churn_flag_reaches_promote_and_main():
    parser = build_parser()
    for command in ("promote", "main", "demo"):
        assert parser.parse_args([command, "--accept-churn"]).accept_churn
        assert not parser.parse_args([command]).accept_churn


def register(client, folder, table: pd.DataFrame, tags: dict[str, str]) -> str:
    folder.mkdir()
    table.to_parquet(folder / TABLE_FILE, index=False)
    return str(client.create_model_version(MODEL_NAME, str(folder), tags=tags).version)


@pytest.mark.slow  # four promote runs on a store of its own
def test_a_challenger_above_max_churn_is_refused_then_accepted_with_the_flag(
    tmp_path, capsys, mlflow_store
):
    from pipelines import workspace as places
    from pipelines.promote import OFFLINE, run_promote

    uri = f"sqlite:///{tmp_path}/m.db"
    common = [f"paths.workspace={tmp_path}", f"mlflow.tracking_uri={uri}", f"merge.top_n={N}"]
    config = load_config(overrides=[*common, "promotion.max_churn=0.3"])
    tracking.configure_for(config)
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL_NAME)
    recalls = {metric: 0.3 for metric in config.promotion.metrics}
    champion = register(
        client,
        tmp_path / "champion",
        table_of(champion_lists()),
        {OFFLINE + k: str(v) for k, v in recalls.items()},
    )
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, champion)
    tags = {"output_gate": "passed", "config_digest": "c", "data_digest": "d"}
    challenger = register(client, tmp_path / "challenger", table_of(challenger_lists(4)), tags)
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, challenger)
    summary = places.evaluation_dir(config) / places.EVALUATION_SUMMARY
    summary.parent.mkdir(parents=True)
    summary.write_text(
        json.dumps({"config_digest": "c", "data_digest": "d", "metrics": {"multi-task": recalls}})
    )

    refused = run_promote(config)
    assert not refused.promote
    assert refused.churn.churn == pytest.approx(0.4) and refused.churn.n == N
    assert refused.reasons[-1].startswith("list churn 40.0% (overlap@5 0.600 with the champion")
    assert "above promotion.max_churn 30.0%; --accept-churn accepts it" in refused.reasons[-1]
    runs = mlflow.search_runs(experiment_names=[config.mlflow.experiment], order_by=["start_time"])
    logged = runs.iloc[-1]
    assert logged["metrics.overlap_at_5"] == pytest.approx(0.6)
    assert logged["metrics.churn"] == pytest.approx(0.4)
    assert logged["metrics.promoted"] == 0.0
    assert client.get_model_version(MODEL_NAME, challenger).tags["promotion"] == "rejected"

    # Within a looser limit, or with the flag, the same challenger is approved.
    looser = run_promote(load_config(overrides=[*common, "promotion.max_churn=0.5"]))
    assert looser.promote and looser.reasons[-1].startswith("list churn 40.0%")
    sets = [item for o in [*common, "promotion.max_churn=0.3"] for item in ("--set", o)]
    assert cli_main([*sets, "promote"]) == 0
    assert "REJECTED" in capsys.readouterr().out
    assert cli_main([*sets, "promote", "--accept-churn"]) == 0
    out = capsys.readouterr().out
    assert f"v{challenger} approved" in out and "accepted (--accept-churn)" in out
    assert client.get_model_version(MODEL_NAME, challenger).tags["promotion"] == "approved"


def test_the_explorer_names_the_registered_model_as_merge_does():
    from pipelines import explorer

    assert (explorer.MODEL_NAME, explorer.TABLE_FILE) == (MODEL_NAME, TABLE_FILE)
