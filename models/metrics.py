"""Offline evaluation of related lists against held-out test events: recall@N, NDCG@N per
objective, dislike rate@N, relevance, catalog coverage, cold-video slices and % change tables.

A lists table has video_id (the source), rank (1..n), related_video_id and, optionally,
content_similarity. A pairs table has source_video_id and video_id (the target).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.objectives import positives as label_positives

PAIR = ["source_video_id", "video_id"]
# The positive objectives compared by recall and NDCG, with the event label that makes a positive.
OBJECTIVE_LABELS = {
    "click": "clicked",
    "play_time": "watched_half",
    "like": "liked",
    "share": "shared",
}
# Lower is better for these; every other metric is higher-is-better.
LOWER_IS_BETTER = {"dislike_rate"}


def test_pairs(events: pd.DataFrame, objective_label: str) -> pd.DataFrame:
    """Distinct positive (source_video_id, video_id) pairs for a label; events without a source
    are dropped. watched_half = clicked and play_time_s >= duration_s / 2."""
    label = label_positives(events, objective_label)
    positive = events[label & events["source_video_id"].notna()]
    return positive[PAIR].drop_duplicates().reset_index(drop=True)


test_pairs.__test__ = False  # not a pytest test, whoever imports it


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of a score against 0/1 labels (scikit-learn's; ties count half); NaN when one
    class is missing. The one AUC of models/: every AUC logged or compared goes through it."""
    from sklearn.metrics import roc_auc_score  # here: the rest of this module needs no sklearn

    y = np.asarray(label).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, score))


def sampled_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Pooled holdout AUC: `roc_auc` of the held-out positives' scores against the scores of the
    sampled negatives, all users pooled (a positive is compared with every negative, not only with
    its own user's)."""
    positive, negative = np.asarray(positive), np.asarray(negative)
    if not len(positive) or not len(negative):
        raise ValueError("sampled_auc: no positive or no negative score")
    label = np.concatenate([np.ones(len(positive), bool), np.zeros(len(negative), bool)])
    return roc_auc(label, np.concatenate([positive, negative]))


def shown_pairs(events: pd.DataFrame) -> pd.DataFrame:
    """Distinct (source_video_id, video_id) pairs of all events that have a source."""
    with_source = events[events["source_video_id"].notna()]
    return with_source[PAIR].drop_duplicates().reset_index(drop=True)


def _top(lists: pd.DataFrame, n: int) -> pd.DataFrame:
    return lists[lists["rank"] <= n]


def _hits(lists: pd.DataFrame, positives: pd.DataFrame, n: int) -> tuple[pd.Series, pd.DataFrame]:
    """Positives per source, and the top-n list rows that are positives (with their rank)."""
    positives = positives[PAIR].drop_duplicates()
    n_positives = positives.groupby("source_video_id").size()
    top = _top(lists, n)[["video_id", "rank", "related_video_id"]].rename(
        columns={"video_id": "source_video_id", "related_video_id": "target"}
    )
    hits = top.merge(
        positives.rename(columns={"video_id": "target"}), on=["source_video_id", "target"]
    )
    return n_positives, hits


def per_source_figures(lists: pd.DataFrame, positives: pd.DataFrame, n: int) -> pd.DataFrame:
    """recall@n and NDCG@n of each source with a positive (0 where it has no list), indexed by
    source: their means are `recall_at_n` and `ndcg_at_n`."""
    n_positives, hits = _hits(lists, positives, n)
    count = hits.groupby("source_video_id").size().reindex(n_positives.index, fill_value=0)
    gains = pd.Series(
        1.0 / np.log2(hits["rank"].to_numpy(dtype=float) + 1.0),
        index=hits["source_video_id"].to_numpy(),
    )
    dcg = gains.groupby(level=0).sum().reindex(n_positives.index, fill_value=0.0)
    ideal = np.cumsum(1.0 / np.log2(np.arange(1, n + 1) + 1.0))
    idcg = ideal[np.minimum(n_positives.to_numpy(), n) - 1] if len(n_positives) else []
    return pd.DataFrame({"recall": count / n_positives, "ndcg": dcg / idcg})


def recall_at_n(lists: pd.DataFrame, positives: pd.DataFrame, n: int) -> float:
    """Mean over sources with a positive of |top-n list ∩ positives| / |positives|.

    A source with positives but no list counts as 0; NaN when there are no positives at all."""
    return float(per_source_figures(lists, positives, n)["recall"].mean())


def ndcg_at_n(lists: pd.DataFrame, positives: pd.DataFrame, n: int) -> float:
    """Binary-relevance NDCG@n averaged over sources with a positive (0 where no list).

    DCG = sum over hits of 1 / log2(rank + 1); IDCG = sum_{i=1..min(n, |positives|)} 1/log2(i+1)."""
    return float(per_source_figures(lists, positives, n)["ndcg"].mean())


def dislike_rate_at_n(
    lists: pd.DataFrame, disliked_pairs: pd.DataFrame, shown_pairs: pd.DataFrame, n: int
) -> float:
    """Share of shown recommendations that were disliked, pooled over all sources (lower is
    better).

    Definition: take the top-n (source, target) pairs of the lists; keep those that test users were
    actually shown from that source (`shown_pairs`: the distinct pairs of all test events); the
    rate is the number of kept pairs that appear in `disliked_pairs` divided by the number kept.
    Recommendations never shown carry no evidence either way and are ignored. NaN if none of the
    recommended pairs were shown."""
    counts = _dislike_counts(lists, disliked_pairs, shown_pairs, n)
    if not counts["shown"].sum():
        return float("nan")
    return float(counts["disliked"].sum() / counts["shown"].sum())


def _dislike_counts(
    lists: pd.DataFrame, disliked_pairs: pd.DataFrame, shown_pairs: pd.DataFrame, n: int
) -> pd.DataFrame:
    """Per source: its top-n pairs that test users were shown, and how many of them they
    disliked (columns shown, disliked)."""
    top = _top(lists, n)[["video_id", "related_video_id"]].drop_duplicates()
    top.columns = PAIR
    shown = top.merge(shown_pairs[PAIR].drop_duplicates(), on=PAIR)
    disliked = disliked_pairs[PAIR].drop_duplicates().assign(disliked=1.0)
    seen = shown.merge(disliked, on=PAIR, how="left")
    return (
        seen.assign(shown=1.0, disliked=seen["disliked"].fillna(0.0))
        .groupby("source_video_id")[["shown", "disliked"]]
        .sum()
    )


def relevance(lists: pd.DataFrame, n: int, threshold: float) -> dict[str, float]:
    """Mean content_similarity of the top-n pairs and the share with similarity >= threshold.

    Rule: a pair without a content similarity (NaN, or no column at all) counts as similarity 0,
    i.e. as irrelevant; callers should attach the similarity of known pairs first. NaN for
    empty lists."""
    top = _top(lists, n)
    if top.empty:
        return {"mean": float("nan"), "share": float("nan")}
    if "content_similarity" in top:
        similarity = top["content_similarity"].fillna(0.0).astype(float)
    else:
        similarity = pd.Series(0.0, index=top.index)
    return {"mean": float(similarity.mean()), "share": float((similarity >= threshold).mean())}


def catalog_coverage(lists: pd.DataFrame, n: int, n_videos: int) -> float:
    """Distinct related_video_id in the top-n lists / n_videos (the catalog size)."""
    return _top(lists, n)["related_video_id"].nunique() / n_videos


def evaluate_lists(
    lists: pd.DataFrame,
    test_events: pd.DataFrame,
    n: int,
    threshold: float,
    n_videos: int,
    cold_videos: set | None = None,
) -> dict[str, float]:
    """Every metric of one method's lists on the test events (which carry the target's
    duration_s): recall_<o>, ndcg_<o> for click, play_time, like, share; dislike_rate;
    relevance_mean, relevance_share; coverage; with cold_videos, recall_<o>_cold and
    ndcg_<o>_cold on the test pairs whose source is a cold video."""
    result: dict[str, float] = {}
    for objective, label in OBJECTIVE_LABELS.items():
        positives = test_pairs(test_events, label)
        result[f"recall_{objective}"] = recall_at_n(lists, positives, n)
        result[f"ndcg_{objective}"] = ndcg_at_n(lists, positives, n)
        if cold_videos is not None:
            cold = positives[positives["source_video_id"].isin(cold_videos)]
            result[f"recall_{objective}_cold"] = recall_at_n(lists, cold, n)
            result[f"ndcg_{objective}_cold"] = ndcg_at_n(lists, cold, n)
    result["dislike_rate"] = dislike_rate_at_n(
        lists, test_pairs(test_events, "disliked"), shown_pairs(test_events), n
    )
    relevant = relevance(lists, n, threshold)
    result["relevance_mean"] = relevant["mean"]
    result["relevance_share"] = relevant["share"]
    result["coverage"] = catalog_coverage(lists, n, n_videos)
    return result


def change_vs_baseline(
    table: pd.DataFrame, baseline: str, lower_is_better: set[str]
) -> pd.DataFrame:
    """Percent change of every method (rows) and metric (columns) against the baseline row:
    (m - b) / |b| * 100, NaN where b == 0 (or b is NaN).

    The sign is not flipped: for the lower-is-better metrics (e.g. dislike_rate) a NEGATIVE change
    is an improvement. Their names are kept in `result.attrs["lower_is_better"]` for reports."""
    if baseline not in table.index:
        raise ValueError(f"baseline {baseline!r} is not a row of the table")
    values = table.astype(float)
    base = values.loc[baseline]
    denominator = base.abs().where(base != 0)
    change = (values - base) / denominator * 100.0
    change.attrs["lower_is_better"] = sorted(set(lower_is_better) & set(table.columns))
    return change


def paired_comparison(
    lists_a: pd.DataFrame,
    lists_b: pd.DataFrame,
    test_events: pd.DataFrame,
    n: int,
    resamples: int,
    seed: int,
    objectives: tuple[str, ...] = ("click", "play_time"),
) -> dict[str, dict[str, float]]:
    """Method a minus method b with a 95% interval from a paired bootstrap over the test sources
    (resampled with replacement, `resamples` times): per objective recall_<o> and ndcg_<o>, and
    dislike_rate (pooled, as `dislike_rate_at_n`). Each entry: difference, low, high, sources.
    Small test sets make small differences noise: an interval holding 0 says so."""
    rng = np.random.default_rng(seed)
    result: dict[str, dict[str, float]] = {}
    for objective in objectives:
        positives = test_pairs(test_events, OBJECTIVE_LABELS[objective])
        a = per_source_figures(lists_a, positives, n)
        b = per_source_figures(lists_b, positives, n)
        for metric in ("recall", "ndcg"):
            difference = (a[metric] - b[metric]).to_numpy(dtype=np.float64)
            result[f"{metric}_{objective}"] = _bootstrap_mean(difference, resamples, rng)
    result["dislike_rate"] = _dislike_difference(lists_a, lists_b, test_events, n, resamples, rng)
    return result


def _bootstrap_mean(values: np.ndarray, resamples: int, rng: np.random.Generator) -> dict:
    if not len(values):
        return {"difference": float("nan"), "low": float("nan"), "high": float("nan"), "sources": 0}
    draws = rng.integers(len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {
        "difference": float(values.mean()),
        "low": float(low),
        "high": float(high),
        "sources": len(values),
    }


def _dislike_difference(lists_a, lists_b, test_events, n, resamples, rng) -> dict:
    """Pooled dislike rate of a minus b, the sources resampled together for both."""
    shown, disliked = shown_pairs(test_events), test_pairs(test_events, "disliked")
    counts = [_dislike_counts(lists, disliked, shown, n) for lists in (lists_a, lists_b)]
    both = counts[0].join(counts[1], how="outer", lsuffix="_a", rsuffix="_b").fillna(0.0)
    if both.empty or not both["shown_a"].sum() or not both["shown_b"].sum():
        return {"difference": float("nan"), "low": float("nan"), "high": float("nan"), "sources": 0}
    values = both.to_numpy(dtype=np.float64)  # shown_a, disliked_a, shown_b, disliked_b

    def rate(rows: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return rows[..., 1] / rows[..., 0] - rows[..., 3] / rows[..., 2]

    draws = rng.integers(len(values), size=(resamples, len(values)))
    sums = values[draws].sum(axis=1)
    low, high = np.nanquantile(rate(sums), [0.025, 0.975])
    return {
        "difference": float(rate(values.sum(axis=0))),
        "low": float(low),
        "high": float(high),
        "sources": len(values),
    }
