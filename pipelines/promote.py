"""The promote step: the challenger (the newest related-videos version) against the champion on
the full method's offline metrics and on list churn; the decision is tagged on the version.

The champion alias itself moves when the publish step (pipelines/publish.py) makes the table live.
A publish stopped before it moved the alias is finished first (pipelines/champion.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from models.metrics import LOWER_IS_BETTER
from pipelines import registry, tracking, windows, workspace
from pipelines.champion import finish_interrupted_publish
from pipelines.config import Config
from pipelines.data.io import DataFileError
from pipelines.list_diff import Churn, churn
from pipelines.registry import CHALLENGER, CHAMPION, MODEL_NAME

log = logging.getLogger(__name__)

METHOD = "multi-task"  # the evaluation row that stands for a table made with this configuration
OFFLINE = "offline_"  # version tags holding a version's offline metrics


@dataclass
class Decision:
    challenger: str
    champion: str | None
    promote: bool
    reasons: list[str]
    comparison: pd.DataFrame  # per metric: challenger, champion, change, worse
    churn: Churn | None = None  # its lists against the champion's (None: no champion to compare)


def compare_metrics(
    challenger: Mapping[str, float | None],
    champion: Mapping[str, float | None] | None,
    metrics: Sequence[str],
    lower_is_better: set[str],
    tolerance: float,
    absolute_tolerance: float = 0.0,
) -> tuple[bool, pd.DataFrame, list[str]]:
    """Whether the challenger may replace the champion: on no metric worse than the champion by
    more than `tolerance` relative to the champion's value or `absolute_tolerance` in the
    metric's units, whichever allows more (for a lower-is-better metric, higher counts as
    worse). The absolute allowance keeps a champion at or near 0 replaceable: from 0, any
    change is infinite. A metric the challenger lacks but the champion has is worse."""
    rows, reasons = [], []
    for metric in metrics:
        new = _number(challenger.get(metric))
        old = _number(champion.get(metric)) if champion is not None else math.nan
        if math.isnan(old):
            rows.append((metric, new, old, math.nan, False))
            continue
        if math.isnan(new):
            rows.append((metric, new, old, math.nan, True))
            reasons.append(f"{metric}: the challenger has no value, the champion {old:.4f}")
            continue
        sign = -1.0 if metric in lower_is_better else 1.0
        if old != 0:
            change = (new - old) / abs(old)
        else:  # from 0, any rise is infinite
            change = 0.0 if new == old else math.copysign(math.inf, new - old)
        allowed = max(tolerance * abs(old), absolute_tolerance)
        worse = sign * (new - old) < -allowed
        rows.append((metric, new, old, change, worse))
        if worse:
            reasons.append(
                f"{metric}: {new:.4f} against the champion's {old:.4f} ({change:+.1%}; "
                f"tolerance {tolerance:.0%} or {absolute_tolerance:g} absolute"
                f"{', lower is better' if sign < 0 else ''})"
            )
    table = pd.DataFrame(rows, columns=["metric", "challenger", "champion", "change", "worse"])
    return not table["worse"].any(), table, reasons


def run_promote(config: Config, version: str | None = None, accept_churn: bool = False) -> Decision:
    """Decide on the challenger (or `version`): tag the decision on the version and log it.
    The champion alias itself moves when the publish step makes the table live. `accept_churn`
    (or promotion.accept_churn): approve it even above promotion.max_churn."""
    client = mlflow.MlflowClient()
    finish_interrupted_publish(config, client)
    version = version or registry.alias_version(client, CHALLENGER)
    if version is None:
        raise DataFileError(f"{MODEL_NAME}: no challenger to promote; run the merge step first")
    found = client.get_model_version(MODEL_NAME, version)
    champion = registry.alias_version(client, CHAMPION)
    metrics = _offline_metrics(config, found)
    for key, value in metrics.items():
        client.set_model_version_tag(MODEL_NAME, version, OFFLINE + key, str(value))
    settings = config.promotion
    champion_metrics = None
    if champion is not None and champion != version:
        champion_metrics = _tagged_metrics(client.get_model_version(MODEL_NAME, champion))
    promote, comparison, reasons = compare_metrics(
        metrics,
        champion_metrics,
        settings.metrics,
        LOWER_IS_BETTER,
        settings.tolerance,
        settings.absolute_tolerance,
    )
    if found.tags.get("output_gate") != "passed":
        promote = False
        reasons.insert(0, "its output gate did not pass")
    too_small = windows.too_small_to_judge(config)
    if too_small is not None:
        promote, reasons = False, [too_small, *reasons]
    lists = _churn(config, version, champion)
    churn_refused, churn_reason = _churn_verdict(
        settings.max_churn, lists, accept_churn or settings.accept_churn
    )
    promote = promote and not churn_refused
    if promote:
        reasons = [
            "already the champion"
            if champion == version
            else "no champion yet"
            if champion is None
            else f"not worse than v{champion} beyond {settings.tolerance:.0%} (or "
            f"{settings.absolute_tolerance:g} absolute) on any metric"
        ]
    reasons += [churn_reason] if churn_reason else []
    params = {
        "challenger": version,
        "champion": champion or "none",
        "tolerance": settings.tolerance,
        "absolute_tolerance": settings.absolute_tolerance,
        "metrics": ",".join(settings.metrics),
        "max_churn": "none" if settings.max_churn is None else settings.max_churn,
    }
    with tracking.step_run("promote", params):
        logged = {f"challenger_{k}": v for k, v in metrics.items() if v is not None}
        for row in comparison.itertuples():
            if not math.isnan(row.champion):
                logged[f"champion_{row.metric}"] = row.champion
        if lists is not None:
            logged |= {f"overlap_at_{lists.n}": lists.overlap, "churn": lists.churn}
            logged["lists_changed"] = lists.lists_changed
        mlflow.log_metrics({**logged, "promoted": float(promote)})
        mlflow.log_text(comparison.to_string(index=False), "comparison.txt")
        mlflow.log_text("\n".join(reasons), "decision.txt")
        mlflow.set_tag("decision", "promote" if promote else "reject")
        decision = "approved" if promote else "rejected"
        client.set_model_version_tag(MODEL_NAME, version, "promotion", decision)
        client.set_model_version_tag(MODEL_NAME, version, "promotion_reasons", "; ".join(reasons))
    log.info(
        "promotion: v%s %s against %s: %s",
        version,
        decision,
        f"champion v{champion}" if champion else "no champion",
        "; ".join(reasons),
    )
    return Decision(version, champion, promote, reasons, comparison, lists)


def _churn(config: Config, version: str, champion: str | None) -> Churn | None:
    """The challenger's overlap@N (N = merge.top_n) with the champion; None without a champion
    to compare with. A table that cannot be read is an error only when max_churn is set."""
    if champion is None or champion == version:
        return None
    try:
        return churn(
            registry.load_registered_table(champion),
            registry.load_registered_table(version),
            config.merge.top_n,
        )
    except (DataFileError, MlflowException, OSError) as error:
        if config.promotion.max_churn is not None:
            raise
        log.warning("promotion: no list churn against v%s: %s", champion, error)
        return None


def _churn_verdict(limit: float | None, lists: Churn | None, accept: bool) -> tuple[bool, str]:
    """(refused, what to say) for churn `lists` under `limit` (promotion.max_churn)."""
    if lists is None:
        return False, ""
    said = (
        f"list churn {lists.churn:.1%} (overlap@{lists.n} {lists.overlap:.3f} with the champion, "
        f"{lists.lists_changed:.1%} of its {lists.videos:,} lists changed)"
    )
    if limit is None or lists.churn <= limit:
        return False, said
    if accept:
        return False, f"{said}: above promotion.max_churn {limit:.1%}, accepted (--accept-churn)"
    return True, f"{said}: above promotion.max_churn {limit:.1%}; --accept-churn accepts it"


def _offline_metrics(config: Config, version) -> dict[str, float | None]:
    """The full method's offline metrics for the configuration and data the version was made
    from (the evaluate step's summary); a clear error when the evaluation is of something else."""
    summary = workspace.read_evaluation(config)
    tags = version.tags
    for key in ("config_digest", "data_digest"):
        if summary.get(key) != tags.get(key):
            raise DataFileError(
                f"{workspace.evaluation_dir(config)}: the last evaluation is of another "
                f"{key.split('_')[0]} ({key} {summary.get(key)}) than v{version.version} "
                f"({tags.get(key)}); run evaluate with the configuration the merge used"
            )
    return dict(summary["metrics"][METHOD])


def _tagged_metrics(version) -> dict[str, float | None]:
    return {
        key[len(OFFLINE) :]: _number(value)
        for key, value in version.tags.items()
        if key.startswith(OFFLINE)
    }


def _number(value) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan
