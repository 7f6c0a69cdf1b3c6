"""The training hook: the synthetic data set's truth checks run through it, named truth_*, and
nothing runs for another data set or for synthetic data without its truth."""

from __future__ import annotations

import numpy as np

from models.vectors import ItemVectors
from pipelines import hooks, workspace
from pipelines.config import load_config
from simulator.synthetic import write_synthetic
from simulator.truth_checks import TruthChecks


def test_the_synthetic_data_set_gets_its_truth_checks(tmp_path, toy_world):
    config = load_config(overrides=[f"paths.workspace={tmp_path}", "synthetic.size=toy"])
    events = toy_world.events
    assert hooks.training_checks(config, events) is None  # no truth written yet
    write_synthetic(toy_world, workspace.raw_dir(config))
    checks = hooks.training_checks(config, events)
    assert isinstance(checks, TruthChecks)

    rng = np.random.default_rng(0)
    routing = checks.routing(events, rng.random(len(events)), 0.6)
    assert set(routing) == {
        "truth_accidental_clicks",
        "truth_accidental_dropped",
        "truth_genuine_dropped",
    }
    ids = toy_world.videos["video_id"].to_numpy()
    vectors = ItemVectors.from_raw(ids, rng.normal(size=(len(ids), 8)))
    found = checks.item_vectors(vectors)
    assert {"truth_series_share_at_10", "truth_series_share_chance"} <= set(found)


def test_other_data_sets_get_no_checks_even_beside_a_truth(tmp_path, toy_world):
    overrides = [f"paths.workspace={tmp_path}", "data.dataset=kuairand"]
    config = load_config(overrides=overrides)
    write_synthetic(toy_world, workspace.raw_dir(config))  # a truth where kuairand's raw data is
    assert hooks.training_checks(config, toy_world.events) is None
