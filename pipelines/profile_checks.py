"""The input gate's checks of what the data can teach: a flag that never changes, a test window
too small to judge, too few users for retention, a single-valued attribute holding lists.

Each finding names the consequence and the setting to change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from models.weights import retention_labels, retention_window
from pipelines.config import Config, EvaluationConfig
from pipelines.data.contract import EVENT_FLAGS, EVENTS, VIDEOS
from pipelines.gate_report import Finding, finding
from pipelines.windows import sized_test_window

log = logging.getLogger(__name__)

CLICKED = "clicked"
BOTH_VALUES, BOTH_CHECK = "flag takes both values", "profile_flag_takes_both_values"
TEST_WINDOW, WINDOW_CHECK = "the test window holds enough events", "profile_test_window_size"
RETAINED, RETAINED_CHECK = "enough users to learn retention from", "profile_retained_users"
NO_LIST, NO_LIST_CHECK = "single-valued attribute holds no list", "profile_single_value_no_list"
WALK_THROUGH = "README, Bring your own data"


@dataclass(frozen=True)
class ProfileSettings:
    """What the profile checks read from the configuration (`from_config`)."""

    dataset: str
    interaction_only: bool
    single_valued: tuple[str, ...]  # video attributes configured single-valued
    list_separator: str
    evaluation: EvaluationConfig
    timezone: str
    retention_days: int
    min_retained_users: int
    weighting: str  # merge.weights
    objectives: Mapping[str, str]  # flag (label) -> objective name

    @classmethod
    def from_config(cls, config: Config) -> ProfileSettings:
        dataset = config.dataset
        return cls(
            config.data.dataset,
            dataset.interaction_only,
            tuple(c for c, kind in dataset.video_attributes.items() if kind == "single"),
            config.data.csv_list_separator,
            config.evaluation,
            dataset.timezone,
            config.weights.retention_days,
            config.weights.min_retained_users,
            config.merge.weights,
            {o.label: o.name for o in config.objectives},
        )


def profile_findings(
    frames: Mapping[str, pd.DataFrame], settings: ProfileSettings
) -> tuple[list[Finding], list[Finding], int]:
    """The errors and warnings of the profile checks on the conformed tables, and how many
    checks were made. A column that is missing or holds no parsed value is not checked here:
    the suites name it."""
    events, videos = frames[EVENTS], frames[VIDEOS]
    errors: list[Finding] = []
    warnings: list[Finding] = []
    checks = 0
    for flag in EVENT_FLAGS:
        checks += 1
        values = events[flag].dropna() if flag in events else pd.Series(dtype=float)
        if values.empty or values.nunique() != 1:
            continue
        error, finding = _constant_flag(flag, int(values.iloc[0]), len(events), settings)
        if finding is not None:
            (errors if error else warnings).append(finding)
    for column in settings.single_valued:
        checks += 1
        if column in videos:
            warnings += _lists_in_single(videos[column], len(videos), column, settings)
    if "ts" in events and events["ts"].notna().any():
        checks += 2
        warnings += _test_window(events["ts"], settings)
        found = _retained_users(events, settings)
        if found is not None:
            (errors if settings.weighting == "retention" else warnings).append(found)
    return errors, warnings, checks


def _finding(*args, **kwargs) -> Finding:
    """A profile check's finding: never a tolerated one (it has no tolerance)."""
    return finding(*args, **kwargs, tolerated=False)


def _constant_flag(
    flag: str, value: int, rows: int, settings: ProfileSettings
) -> tuple[bool, Finding | None]:
    """(is it an error, the finding) for a flag with one value on every event. Every event a
    click is an interaction-only log: an error unless the mode is on. No click at all leaves
    the click objective (and the baseline) nothing to learn: an error. Another flag stuck at
    one value leaves its objective without positives or negatives: a warning."""
    objective = settings.objectives.get(flag, flag)
    every = f"every one of {rows:,} events has {flag} = {value}"
    if flag == CLICKED and value == 1:
        if settings.interaction_only:
            return False, None
        observed = (
            f"{every}: the click objective and the coordinating network have no negatives "
            "to learn from"
        )
        hint = (
            "a log of interactions only (no impressions without a click)? set "
            f"datasets.{settings.dataset}.interaction_only: true: every event is then a click "
            f"and the coordinating network routes every positive ({WALK_THROUGH})"
        )
        return True, _finding(EVENTS, flag, (BOTH_VALUES, BOTH_CHECK), rows, observed, hint)
    if flag == CLICKED:
        observed = f"{every}: no objective has a positive and the baseline cannot be trained"
        hint = (
            f"check the column (or datasets.{settings.dataset}.columns.events.clicked): 1 "
            "where the video was clicked or played"
        )
        return True, _finding(EVENTS, flag, (BOTH_VALUES, BOTH_CHECK), rows, observed, hint)
    if value == 0:
        observed = f"{every}: objective {objective} has no positives; its models are skipped"
        hint = (
            "expected if the log does not record it; else check the column (or "
            f"datasets.{settings.dataset}.columns.events.{flag})"
        )
    else:
        observed = (
            f"{every}: objective {objective} has no negatives; the coordinating network "
            "cannot learn it"
        )
        hint = (
            f"check the column (or datasets.{settings.dataset}.columns.events.{flag}): 1 "
            "only on events that were"
        )
    return False, _finding(EVENTS, flag, (BOTH_VALUES, BOTH_CHECK), rows, observed, hint)


def _lists_in_single(
    values: pd.Series, rows: int, column: str, settings: ProfileSettings
) -> list[Finding]:
    """A single-valued attribute whose values hold the list separator: each combination would
    be one profile value (a list of genres as one "genre")."""
    text = values.dropna().astype(str)
    holding = text[text.str.contains(settings.list_separator, regex=False)]
    if holding.empty:
        return []
    distinct = text.nunique()
    observed = f"{distinct:,} distinct values as single-valued"
    hint = (
        f"if {column} is a list, configure datasets.{settings.dataset}.video_attributes."
        f"{column}: multi (each item a value of the profile); as single-valued each combination "
        f"is one value ({observed})"
    )
    return [
        _finding(
            VIDEOS,
            column,
            (NO_LIST, NO_LIST_CHECK),
            rows,
            observed,
            hint,
            list(holding.drop_duplicates().head(3)),
            len(holding),
        )
    ]


def _test_window(ts: pd.Series, settings: ProfileSettings) -> list[Finding]:
    """The evaluation's test window against `evaluation.min_test_events`: what evaluate will
    test on, and whether promotion can judge it."""
    evaluation = settings.evaluation
    window = sized_test_window(ts, evaluation, settings.timezone)
    if window.configured_events >= evaluation.min_test_events or evaluation.test_days < 1:
        return []
    observed = (
        f"the last {window.configured_days} day(s) hold {window.configured_events:,} of "
        f"{window.total:,} events, fewer than evaluation.min_test_events "
        f"{evaluation.min_test_events:,}"
    )
    if window.enough:
        observed += f": the evaluation tests on the last {window.days} days instead"
        hint = f"{window.events:,} test events then; set evaluation.test_days to choose yourself"
    else:
        observed += (
            f"; at most {window.events:,} in {window.days} days (evaluation.max_test_share "
            f"{evaluation.max_test_share:g}): too few to judge, promotion will refuse"
        )
        hint = (
            "bring a longer log, or set evaluation.min_test_events and min_test_sources to 0 "
            "to promote anyway"
        )
    return [_finding(EVENTS, "ts", (TEST_WINDOW, WINDOW_CHECK), len(ts), observed, hint)]


def _retained_users(events: pd.DataFrame, settings: ProfileSettings) -> Finding | None:
    """Users seen before the retention cut-off and again in the window after it, against
    `weights.min_retained_users` (only where the weighting may use retention)."""
    if settings.weighting not in ("auto", "retention") or "user_id" not in events:
        return None
    known = events[["user_id", "ts"]].dropna()
    if known.empty:
        return None
    # The merge step's own warning on a short log would read as if it ran here.
    merge_log = logging.getLogger(retention_window.__module__)
    level = merge_log.level
    merge_log.setLevel(logging.ERROR)
    try:
        cutoff, days = retention_window(known, settings.retention_days)
    finally:
        merge_log.setLevel(level)
    retained = retention_labels(known, cutoff, days)
    if int(retained.sum()) >= settings.min_retained_users:
        return None
    observed = (
        f"{int(retained.sum()):,} of {len(retained):,} users have an event in the {days:.1f} "
        f"days after the retention cut-off, fewer than weights.min_retained_users "
        f"{settings.min_retained_users}: retention weights would be noise"
    )
    hint = (
        "set merge.weights: transitions (auto keeps retention only if it orders the validation "
        "slice better)"
    )
    return _finding(EVENTS, "user_id", (RETAINED, RETAINED_CHECK), len(events), observed, hint)
