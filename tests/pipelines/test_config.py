"""The configuration: SPEC defaults present, overrides layered, bad keys and types named."""

from __future__ import annotations

import datetime
import typing
from pathlib import Path

import pytest

from pipelines.config import (
    ConfigError,
    ObjectiveLabel,
    ObjectiveValue,
    load_config,
    parse_override,
)


def test_defaults_hold_the_spec_values(config):
    objectives = {objective.name: objective for objective in config.objectives}
    assert list(objectives) == ["click", "play_time", "like", "share", "dislike"]
    assert objectives["click"].als.rank == 30 and objectives["click"].als.alpha == 100.0
    assert objectives["play_time"].als.max_iter == 17
    assert objectives["like"].als.reg_param == 0.015
    assert objectives["share"].group == "satisfaction"
    assert objectives["dislike"].sign == -1 and objectives["dislike"].als.alpha == 10.0
    assert config.candidates.threshold == 0.65
    assert config.coordinating.threshold == 0.6
    assert config.merge.top_n == 20
    # The models' own parameter classes, seeded by `seed`; YAML's lists read as their tuples.
    assert config.two_tower.tower_units == (256, 128) and config.two_tower.batch_size == 512
    assert config.coordinating.hidden_units == (64, 32)
    assert config.two_tower.seed == config.coordinating.seed == config.seed
    assert config.seed == 99 and config.two_tower.max_epochs == 100
    assert config.dataset.source_window == "30min"
    assert config.datasets["kuairand"].source_window == "calendar_day"
    assert config.synthetic.sizes["default"].events == 200_000


def test_overrides_layer_over_defaults_and_files(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("merge:\n  top_n: 30\ncandidates:\n  threshold: 0.7\n")
    config = load_config(mine, ["merge.top_n=40", "data.dataset=kuairand"])
    assert config.merge.top_n == 40
    assert config.candidates.threshold == 0.7
    assert config.candidates.max_per_source == 100  # untouched default
    assert config.dataset.video_attributes["author_id"] == "single"


def test_dataset_gate_block_overrides_the_gate_defaults():
    assert load_config().gate_settings.duplicate_event_tolerance == 0.0
    kuairand = load_config(overrides=["data.dataset=kuairand"])
    assert kuairand.gate_settings.duplicate_event_tolerance == 0.07
    assert kuairand.gate_settings.future_slack == "1h"


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=[1, 2]") == {"a": [1, 2]}
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("no-equals-sign")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("merge.top_nn=3", "merge.top_nn: unknown key"),
        ("merge.top_n=many", "merge.top_n: expected int"),
        ("merge.top_n=2.5", r"merge.top_n: expected int, got 2.5"),
        ("merge.weights=best", "merge.weights: 'best' is not 'auto', 'transitions'"),
        ("training.als_engine=mllib", "training.als_engine: 'mllib' is not 'implicit' or"),
        ("serving.online_store=memcached", "serving.online_store: 'memcached' is not"),
        ("two_tower.optimizer=adagrad", "two_tower.optimizer: 'adagrad' is not 'sgd' or 'adam'"),
        ("two_tower.tower_units=[64, x]", r"two_tower.tower_units\[1\]: expected int, got 'x'"),
        ("two_tower.seed=3", "two_tower.seed: unknown key"),
        ("coordinating.folds=", "coordinating.folds: expected int, got ''"),
        ("objectives=[{name: click}]", r"objectives\[0\].group: missing"),
        ("candidates.fill_pool=0", "candidates.fill_pool: 0 must be at least 1"),
        ("weights.validation_share=1", "weights.validation_share: 1 must be below 1"),
        ("training.workers=-1", r"training.workers: -1 must be at least 0 \(0: one per core\)"),
        ("gate.examples=true", "gate.examples: expected int, got True"),
        ("synthetic.catalog=[]", "synthetic.catalog: expected a mapping, got \\[\\]"),
        ("data.dataset=nowhere", "data.dataset: 'nowhere' is not one of"),
        ("synthetic.size=huge", "synthetic.size: 'huge' is not one of"),
        ("merge.manual_weights.watch=2.0", "merge.manual_weights"),
        ("datasets.synthetic.video_attributes.styles=several", "styles: 'several'"),
        ("weights.evidence=[content, recency]", r"weights.evidence: \['recency'\]"),
        ("weights.popularity_of=views", r"weights.popularity_of: \['views'\]"),
    ],
)
def test_bad_values_are_named(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(overrides=[override])


def test_yaml_values_strict_types_still_accept(tmp_path):
    config = load_config(
        overrides=["coordinating.learning_rate=1", "synthetic.start_date=2026-02-01"]
    )
    assert config.coordinating.learning_rate == 1.0
    assert isinstance(config.coordinating.learning_rate, float)  # an int where a float is due
    assert config.synthetic.start_date == "2026-02-01"  # YAML reads an unquoted date
    assert config.raw["synthetic"]["start_date"] == datetime.date(2026, 2, 1)  # as written


def test_the_objectives_literals_are_the_models_names():
    from models.objectives import LABELS, VALUES

    assert set(typing.get_args(ObjectiveLabel)) == set(LABELS)
    assert set(typing.get_args(ObjectiveValue)) == set(VALUES)


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("merge: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)


def test_paths_in_a_config_file_resolve_from_that_file(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "paths: {workspace: ws}\n"
        "datasets:\n"
        "  synthetic:\n"
        "    files: {videos: data/videos.csv, users: /abs/users.csv, events: ~/events.csv}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(folder / "mine.yaml", ["paths.kuairand=here"])
    files = config.datasets["synthetic"].files
    assert Path(config.paths.workspace) == folder / "ws"
    assert Path(files["videos"]) == folder / "data" / "videos.csv"
    assert files["users"] == "/abs/users.csv"
    assert Path(files["events"]) == Path("~/events.csv").expanduser()
    assert config.paths.kuairand == "here"  # a --set override is the caller's
