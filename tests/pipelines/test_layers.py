"""The layers: no step module reaches another step module (directly or through a shared module),
the method in models/ imports nothing from pipelines/ or simulator/ and no platform library, and
pipelines/ and the synthetic world in simulator/ meet only where the rules below say."""

from __future__ import annotations

import ast

import pytest

from pipelines import fingerprint, main

# One module per step of the chain; main.py and cli.py chain them and may import them all.
STEPS = (
    "generate",
    "ingest",
    "validate",
    "features",
    "candidates",
    "train",
    "merge",
    "evaluate",
    "promote",
    "publish",
)
STEP_MODULES = {f"pipelines.{name}" for name in STEPS}
PLATFORM = ("mlflow", "feast", "great_expectations")
# The only modules of pipelines/ that import simulator/: the generate step, the experiment step,
# and the training hook (stage 2 runs the synthetic data set's truth checks through it alone).
REACH_SIMULATOR = {"pipelines.generate", "pipelines.experiment", "pipelines.hooks"}
# All that simulator/ imports from pipelines/: the configuration (the synthetic world's settings)
# and the data io (writing the generated tables). Not the steps, the workspace or the tracking.
SIMULATOR_NEEDS = {"pipelines.config", "pipelines.data.io"}


def _step_reached(step: str) -> list[str] | None:
    """The import path from `step` to another step module, if there is one: the walk follows
    every project module `step` imports and, through the shared (non-step) ones, transitively."""
    paths = {step: [step]}
    todo = [step]
    while todo:
        name = todo.pop()
        for imported in fingerprint._project_imports(name):
            if fingerprint._path(imported) is None or imported in paths:
                continue
            path = [*paths[name], imported]
            if imported in STEP_MODULES:
                return path
            paths[imported] = path
            todo.append(imported)
    return None


@pytest.mark.parametrize("step", sorted(STEP_MODULES))
def test_no_step_imports_another_step(step):
    assert fingerprint._path(step) is not None, f"{step}: no such module"
    path = _step_reached(step)
    assert path is None, f"{path[0]} -> {path[-1]}: via {' -> '.join(path)}"


def test_the_walk_finds_an_edge(tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines" / "merge.py").write_text("from pipelines.shared import x\n")
    (root / "pipelines" / "shared.py").write_text("from pipelines import train\n")
    (root / "pipelines" / "train.py").write_text("x = 1\n")
    monkeypatch.setattr(fingerprint, "ROOT", root)
    assert _step_reached("pipelines.merge") == [
        "pipelines.merge",
        "pipelines.shared",
        "pipelines.train",
    ]
    assert _step_reached("pipelines.train") is None


def test_each_steps_fingerprint_covers_the_shared_code_it_runs():
    """main fingerprints a step by the source of the modules it imports: the stage modules a
    step runs must be among them."""
    from pipelines.config import load_config

    runs = {
        "generate": {"simulator.synthetic", "simulator.behaviour"},  # code outside pipelines/
        "candidates": {"pipelines.stage1"},
        "train": {"pipelines.stage2", "pipelines.hooks", "simulator.truth_checks"},
        "merge": {"pipelines.stage3", "pipelines.registry"},
        "evaluate": {"pipelines.stage1", "pipelines.stage2", "pipelines.stage3"},
    }
    chain = {step.name: step for step in main.steps(load_config())}
    for name, modules in runs.items():
        step = chain[name]
        closure = fingerprint._closure(step.module or f"pipelines.{name}")
        assert {f"pipelines.{name}", "pipelines.workspace", *modules} <= closure, name


def _absolute_imports(path) -> list[str]:
    """The modules a file imports, anywhere in it (a function's imports too): `from a import b`
    counts as a.b when that is a module of the checkout, else as a."""
    found = []
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.append(name if fingerprint._path(name) is not None else node.module)
    return found


def _package_imports(package: str, prefix: str) -> dict[str, set[str]]:
    """Per module of `package`, the modules it imports whose name starts with `prefix`."""
    found = {}
    for path in sorted((fingerprint.ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(fingerprint.ROOT).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        names = {n for n in _absolute_imports(path) if n.split(".")[0] == prefix}
        if names:
            found[module] = names
    return found


def test_only_generate_experiment_and_the_training_hook_import_simulator():
    importers = _package_imports("pipelines", "simulator")
    assert set(importers) == REACH_SIMULATOR, {
        "unexpected": sorted(set(importers) - REACH_SIMULATOR),
        "missing": sorted(REACH_SIMULATOR - set(importers)),
    }


def test_simulator_imports_only_the_config_and_data_io_from_pipelines():
    found = _package_imports("simulator", "pipelines")
    extra = {module: names - SIMULATOR_NEEDS for module, names in found.items()}
    extra = {module: sorted(names) for module, names in extra.items() if names}
    assert not extra, extra
    assert found, "the walk found no import of pipelines/ in simulator/ at all"


def test_the_simulator_rules_see_function_level_and_from_imports(tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "pipelines" / "data").mkdir(parents=True)
    (root / "simulator").mkdir()
    (root / "pipelines" / "data" / "io.py").write_text("x = 1\n")
    (root / "pipelines" / "stage2.py").write_text("def f():\n    from simulator import world\n")
    (root / "simulator" / "world.py").write_text("from pipelines.data import io, other\n")
    monkeypatch.setattr(fingerprint, "ROOT", root)
    assert _package_imports("pipelines", "simulator") == {"pipelines.stage2": {"simulator.world"}}
    assert _package_imports("simulator", "pipelines") == {
        "simulator.world": {"pipelines.data.io", "pipelines.data"}
    }


def test_models_import_no_pipeline_and_no_platform_library():
    found = []
    for path in sorted((fingerprint.ROOT / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(fingerprint.ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in ("pipelines", "simulator", *PLATFORM)
            ]
    assert not found, found
