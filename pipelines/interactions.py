"""Interaction-only logs (`datasets.<name>.interaction_only`): a log with no impressions
without a click, e.g. ratings, where every event is an interaction; what that mode changes.

The click objective is every interaction (`clicked` may be absent: it is 1 on every event), so
the coordinating network has no non-click to learn click from: its routing is off (every
positive of an objective goes to that objective's models). ALS and the two-tower models need
positives only (the two-tower samples its negatives), and stage 3 calibrates on candidate pairs
(the next interaction against the source's other candidates), so they train as usual.
"""

from __future__ import annotations

import dataclasses
import logging

import pandas as pd

from pipelines.config import Config

log = logging.getLogger(__name__)

CLICKED = "clicked"
# p_k > 0 holds for every output of a sigmoid: every positive is routed.
NO_ROUTING = 0.0


def check_dataset_keys(config: Config) -> None:
    """The data-set keys this module and pipelines/columns.py read, checked at load time."""
    from pipelines.columns import check_mapping

    check_mapping(config)


def with_mode(config: Config) -> Config:
    """`config` as the active data set's mode has it: routing off for an interaction-only log."""
    if not config.dataset.interaction_only:
        return config
    coordinating = dataclasses.replace(config.coordinating, threshold=NO_ROUTING)
    return config.model_copy(update={"coordinating": coordinating})


def with_clicks(events: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Raw events as the mode reads them: in an interaction-only log without a `clicked`
    column every event is a click. Said in the log either way, once per validation."""
    if not config.dataset.interaction_only:
        return events
    name = config.data.dataset
    filled = CLICKED not in events.columns
    log.info(
        "interaction-only log (datasets.%s.interaction_only): %severy event is a click; the "
        "coordinating network routes every positive (coordinating.threshold %s)",
        name,
        "no clicked column, " if filled else "",
        NO_ROUTING,
    )
    return events.assign(**{CLICKED: 1}) if filled else events
