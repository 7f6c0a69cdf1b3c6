"""What a fingerprint is made of: the project's version and the source of the project modules a
piece of work runs (`code_digest`), and the configuration values under dotted keys (`lookup`).

`main` fingerprints each step with them; the evaluation its stage-2 fits, to reuse them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines import registry

ROOT = Path(__file__).resolve().parent.parent  # the checkout, holding the PACKAGES
PACKAGES = ("pipelines", "models", "simulator", "feature_repo")
# The configuration stage 2 depends on (the train step's keys).
TRAINING_KEYS = ("seed", "objectives", "coordinating", "two_tower", "training")


def code_digest(module: str) -> str:
    """The project's version and the sha256 of the source of `module` and of every project
    module it imports, directly or not (read from the files, not from the imported modules)."""
    digest = hashlib.sha256(_version().encode())
    for name in sorted(_closure(module)):
        digest.update(name.encode())
        digest.update(_source(name))
    return digest.hexdigest()[:12]


@functools.cache
def _version() -> str:
    try:
        return metadata.version("related-videos")
    except metadata.PackageNotFoundError:
        return "unknown"


def _closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or _path(name) is None:
            continue
        seen.add(name)
        todo.extend(_project_imports(name))
        if name == "pipelines.registry":  # registers model code it reads as files
            todo.extend(f"pipelines.model_code.{p.stem}" for p in registry.MODEL_CODE.glob("*.py"))
    return seen


def _path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _source(module: str) -> bytes:
    path = _path(module)
    return path.read_bytes() if path else b""


def _project_imports(module: str) -> list[str]:
    """The project modules `module` imports (`import a.b`, `from a import b`, `from a.b import
    c`; a name that is a module counts as one)."""
    path = _path(module)
    tree = ast.parse(path.read_bytes()) if path else ast.Module(body=[], type_ignores=[])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name.split(".")[0] in PACKAGES]


def lookup(raw: dict, dotted: str) -> Any:
    value: Any = raw
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
