"""The chain's reuse: a step reruns when its configuration, inputs or code change (the project's
version, or the source of any project module it imports), and on demand with --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import fingerprint, main
from pipelines.config import ConfigError, load_config


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny project tree: a step module importing a models module, read by code_digest."""
    root = tmp_path / "src"
    (root / "pipelines").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "pipelines" / "first.py").write_text("from models.helper import value\n")
    (root / "pipelines" / "second.py").write_text("import json\n")
    (root / "models" / "helper.py").write_text("value = 1\n")
    monkeypatch.setattr(fingerprint, "ROOT", root)
    return root


def _chain(tmp_path: Path, calls: list[str]) -> list[main.Step]:
    def runner(name: str):
        def run(config):
            (tmp_path / "out" / name).mkdir(parents=True, exist_ok=True)
            calls.append(name)

        return run

    return [
        main.Step(name, runner(name), lambda c, n=name: tmp_path / "out" / n, (), module=module)
        for name, module in (("first", "pipelines.first"), ("second", "pipelines.second"))
    ]


def test_a_code_change_reruns_the_step_that_imports_it(project, tmp_path, monkeypatch):
    config = load_config()
    calls: list[str] = []
    chain = _chain(tmp_path, calls)
    main.run_steps(config, chain)
    assert calls == ["first", "second"]
    _, reused = main.run_steps(config, chain)
    assert reused == ["first", "second"] and calls == ["first", "second"]
    # A fix in a module the first step imports: it reruns, and the second after it (its
    # upstream fingerprint changed).
    (project / "models" / "helper.py").write_text("value = 2\n")
    ran, reused = main.run_steps(config, chain)
    assert list(ran) == ["first", "second"] and reused == []
    # An upgrade of the project reruns everything.
    monkeypatch.setattr(fingerprint, "_version", lambda: "9.9.9")
    ran, _ = main.run_steps(config, chain)
    assert list(ran) == ["first", "second"]
    _, reused = main.run_steps(config, chain)
    assert reused == ["first", "second"]


def test_force_reruns_a_step_and_those_after_it(project, tmp_path):
    config = load_config()
    chain = _chain(tmp_path, [])
    main.run_steps(config, chain)
    ran, reused = main.run_steps(config, chain, force=["second"])
    assert list(ran) == ["second"] and reused == ["first"]
    ran, reused = main.run_steps(config, chain, force=["first"])
    assert list(ran) == ["first", "second"]
    with pytest.raises(ConfigError, match=r"--force: \['trian'\] are not steps"):
        main.run_steps(config, chain, force=["trian"])


def test_the_real_steps_digest_their_imports():
    closure = fingerprint._closure("pipelines.merge")
    assert {"pipelines.merge", "pipelines.stage3", "models.fusion", "models.merge"} <= closure
    assert "pipelines.model_code.related_table" in closure  # registered as a file
    assert main.code_digest("pipelines.merge") != main.code_digest("pipelines.validate")


def test_a_step_after_an_earlier_one_depends_only_on_what_it_takes_from_those_between(
    project, tmp_path
):
    """Train builds on the candidates and takes from the evaluation only its two-tower decision
    (`after`, `inputs`): an evaluation rerun with the same decision does not retrain."""
    (project / "pipelines" / "third.py").write_text("import os\n")
    calls: list[str] = []
    decision = {"skip": "click"}
    first, second = _chain(tmp_path, calls)

    def third_run(config):
        (tmp_path / "out" / "third").mkdir(parents=True, exist_ok=True)
        calls.append("third")

    third = main.Step(
        "third",
        third_run,
        lambda c: tmp_path / "out" / "third",
        (),
        lambda c: dict(decision),
        module="pipelines.third",
        after="first",
    )
    chain = [first, second, third]
    config = load_config()
    main.run_steps(config, chain)
    assert calls == ["first", "second", "third"]
    (project / "pipelines" / "second.py").write_text("import json, os\n")  # second changes
    ran, reused = main.run_steps(config, chain)
    assert list(ran) == ["second"] and reused == ["first", "third"]
    decision["skip"] = "click,like"  # what third takes from second changes
    ran, reused = main.run_steps(config, chain)
    assert list(ran) == ["third"] and reused == ["first", "second"]
    (project / "models" / "helper.py").write_text("value = 3\n")  # first changes: all rerun
    ran, _ = main.run_steps(config, chain)
    assert list(ran) == ["first", "second", "third"]


def test_train_builds_on_the_candidates_and_the_evaluations_decision_only():
    chain = {step.name: step for step in main.steps(load_config())}
    assert chain["train"].after == "candidates"
    assert chain["merge"].after == ""  # the models just trained
