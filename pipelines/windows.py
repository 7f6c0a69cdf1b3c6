"""The evaluation's test window sized to the data, and when an evaluation is too small to judge:
the input gate warns with the same figures the evaluate and promote steps then act on.

A test window of `evaluation.test_days` holding fewer than `evaluation.min_test_events` events
is widened a day at a time while it holds at most `evaluation.max_test_share` of the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from pipelines import workspace
from pipelines.config import Config, EvaluationConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationWindow:
    configured_days: int
    days: int
    events: int  # events in the last `days` calendar days
    configured_events: int  # events in the last `configured_days`
    total: int
    enough: bool  # at least evaluation.min_test_events

    @property
    def widened(self) -> bool:
        return self.days != self.configured_days


def sized_test_window(ts: pd.Series, settings: EvaluationConfig, timezone: str) -> EvaluationWindow:
    """The test window for the event times `ts` (UTC): `settings.test_days` calendar days (in
    `timezone`), or more when those hold too few events (see the module's docstring). Always
    leaves a training day."""
    ts = ts.dropna()
    days = settings.test_days
    if ts.empty or days < 1:  # evaluate's split refuses fewer than one day
        return EvaluationWindow(days, days, 0, 0, len(ts), False)
    local_days = ts.dt.tz_convert(timezone).dt.normalize()
    last = local_days.max()
    age = ((last - local_days) / pd.Timedelta(days=1)).round().astype(int)  # 0: the last day
    per_age = age.value_counts().sort_index()
    in_window = per_age.cumsum()
    span = int(age.max()) + 1  # calendar days the log covers

    def held(d: int) -> int:
        return int(in_window[in_window.index < d].iloc[-1]) if (in_window.index < d).any() else 0

    configured = held(days)
    chosen = days
    if configured < settings.min_test_events:
        cap = settings.max_test_share * len(ts)
        for d in range(days + 1, span):  # span - 1 at most: a training day stays
            if held(d) > cap:
                break
            chosen = d
            if held(d) >= settings.min_test_events:
                break
    events = held(chosen)
    return EvaluationWindow(
        days, chosen, events, configured, len(ts), events >= settings.min_test_events
    )


def evaluation_test_days(events: pd.DataFrame, config: Config) -> int:
    """The evaluation's test days for these events (the validated log), with a warning when the
    configured window was widened or is still too small to judge."""
    window = sized_test_window(events["ts"], config.evaluation, config.dataset.timezone)
    if window.widened:
        log.warning(
            "evaluation: the last %d day(s) hold %s events (fewer than "
            "evaluation.min_test_events %s): testing on the last %d days (%s events) instead",
            window.configured_days,
            f"{window.configured_events:,}",
            f"{config.evaluation.min_test_events:,}",
            window.days,
            f"{window.events:,}",
        )
    if not window.enough:
        log.warning(
            "evaluation: %s test events, fewer than evaluation.min_test_events %s: too few to "
            "judge; promotion will refuse this evaluation",
            f"{window.events:,}",
            f"{config.evaluation.min_test_events:,}",
        )
    return window.days


def too_small_to_judge(config: Config) -> str | None:
    """Why the last evaluation is too small for promotion to judge (fewer test events than
    `evaluation.min_test_events`, or fewer sources with a test click than
    `evaluation.min_test_sources`), or None."""
    summary = workspace.read_evaluation(config)
    return evaluation_too_small(summary, config.evaluation)


def evaluation_too_small(summary: Mapping, settings: EvaluationConfig) -> str | None:
    """The reason an evaluation `summary` (evaluation.json) is too small to judge, or None. A
    summary that does not give its size (from before the evaluate step wrote it) is judged."""
    if "test_events" not in summary:
        return None
    events = int(summary.get("test_events") or 0)
    sources = int(max((summary.get("test_sources") or {"click": 0}).values(), default=0))
    if events >= settings.min_test_events and sources >= settings.min_test_sources:
        return None
    return (
        f"its evaluation is too small to judge: {events:,} test events and {sources:,} test "
        f"sources with a positive (evaluation.min_test_events {settings.min_test_events:,}, "
        f"min_test_sources {settings.min_test_sources:,}); bring a longer log, or set both to "
        "0 to judge it anyway"
    )
