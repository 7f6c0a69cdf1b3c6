"""The configuration a workspace remembers: `main --config FILE` stores the resolved configuration
in the workspace, and a later command on it without `--config` reads it back (and says so).

Stored with its paths absolute and its secrets redacted (pipelines/redaction.py); a redacted
value is not read back: the default stands in and a warning says to give it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    config_from_dict,
    deep_merge,
    parse_override,
    relative_to,
)
from pipelines.redaction import MASK, redact_config

log = logging.getLogger(__name__)

FILE = "config.yaml"
HEADER = (
    "# The configuration of this workspace's last `related-videos main --config`, resolved\n"
    "# (paths absolute, secrets redacted). Commands on this workspace without --config read\n"
    "# it; a new `main --config` replaces it.\n"
)


def remembered_path(workspace: Path) -> Path:
    return Path(workspace) / FILE


def remember(config: Config) -> Path:
    """Store `config` (its raw form, paths made absolute, secrets redacted) in its workspace."""
    raw = redact_config(_absolute_paths(config.raw))
    path = remembered_path(config.workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{FILE}.tmp")
    scratch.write_text(HEADER + yaml.safe_dump(raw, sort_keys=False))
    scratch.replace(path)
    log.info("the workspace remembers this configuration: %s", path)
    return path


def load_remembered(workspace: Path, overrides: Iterable[str] = ()) -> Config | None:
    """The configuration `workspace` remembers, with `overrides` on top (the workspace stays
    the one asked for), or None when it remembers none."""
    path = remembered_path(workspace)
    if not path.is_file():
        return None
    try:
        stored = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(
            f"{path}: the workspace's remembered configuration cannot be read ({error}); "
            "pass --config again, or delete the file"
        ) from error
    if not isinstance(stored, dict):
        raise ConfigError(f"{path}: not a mapping; pass --config again, or delete the file")
    defaults = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    redacted = _redacted_keys(stored)
    for key in redacted:
        log.warning(
            "%s: %s held a secret and was not stored; the default stands in (give it with --set)",
            path,
            key,
        )
    raw = deep_merge(defaults, _without(stored, redacted))
    for override in [f"paths.workspace={workspace}", *overrides]:
        raw = deep_merge(raw, parse_override(override))
    try:
        config = config_from_dict(raw)
    except ConfigError as error:
        raise ConfigError(
            f"{path} (the workspace's remembered configuration): {error}; pass --config again"
        ) from error
    log.info(
        "no --config: using the configuration this workspace remembers from its last `main "
        "--config` (%s; data set %s)",
        path,
        config.data.dataset,
    )
    return config


def _absolute_paths(raw: dict[str, Any]) -> dict[str, Any]:
    """`paths.*` and `datasets.<name>.files.*` resolved from the current directory, as the
    run that stores them read them."""
    return relative_to(raw, Path.cwd())


def _redacted_keys(raw: Any, prefix: str = "") -> list[str]:
    if isinstance(raw, dict):
        return [k for key, v in raw.items() for k in _redacted_keys(v, f"{prefix}{key}.")]
    if isinstance(raw, str) and MASK in raw:
        return [prefix.rstrip(".")]
    return []


def _without(raw: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """`raw` without the dotted `keys`."""
    trimmed = yaml.safe_load(yaml.safe_dump(raw))
    for key in keys:
        *parents, last = key.split(".")
        cursor = trimmed
        for part in parents:
            cursor = cursor[part]
        cursor.pop(last, None)
    return trimmed
