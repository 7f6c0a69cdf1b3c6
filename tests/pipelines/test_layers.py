"""The layers: no step module reaches another step module (directly or through a shared module),
and the method in models/ imports nothing from pipelines/ and no platform library."""

from __future__ import annotations

import ast

import pytest

from pipelines import main

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


def _step_reached(step: str) -> list[str] | None:
    """The import path from `step` to another step module, if there is one: the walk follows
    every project module `step` imports and, through the shared (non-step) ones, transitively."""
    paths = {step: [step]}
    todo = [step]
    while todo:
        name = todo.pop()
        for imported in main._project_imports(name):
            if main._path(imported) is None or imported in paths:
                continue
            path = [*paths[name], imported]
            if imported in STEP_MODULES:
                return path
            paths[imported] = path
            todo.append(imported)
    return None


@pytest.mark.parametrize("step", sorted(STEP_MODULES))
def test_no_step_imports_another_step(step):
    assert main._path(step) is not None, f"{step}: no such module"
    path = _step_reached(step)
    assert path is None, f"{path[0]} -> {path[-1]}: via {' -> '.join(path)}"


def test_the_walk_finds_an_edge(tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines" / "merge.py").write_text("from pipelines.shared import x\n")
    (root / "pipelines" / "shared.py").write_text("from pipelines import train\n")
    (root / "pipelines" / "train.py").write_text("x = 1\n")
    monkeypatch.setattr(main, "ROOT", root)
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
        "candidates": {"pipelines.stage1"},
        "train": {"pipelines.stage2"},
        "merge": {"pipelines.stage3", "pipelines.registry"},
        "evaluate": {"pipelines.stage1", "pipelines.stage2", "pipelines.stage3"},
    }
    chain = {step.name: step for step in main.steps(load_config())}
    for name, modules in runs.items():
        step = chain[name]
        closure = main._closure(step.module or f"pipelines.{name}")
        assert {f"pipelines.{name}", "pipelines.workspace", *modules} <= closure, name


def test_models_import_no_pipeline_and_no_platform_library():
    found = []
    for path in sorted((main.ROOT / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(main.ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in ("pipelines", *PLATFORM)
            ]
    assert not found, found
