"""Stage 3's learned parts, fitted on held-out training events: per objective the calibration of
each side's cosine, whether the two-tower side earns its place (validation AUC, then the
validation lists), which objective weighting (transitions, equal, retention, or a simple bar's
own order) orders the lists best on a later validation slice, whether a short list's fills may
outrank its gated pairs there, and the dislike guard's penalty on the candidate's risk.

The transition weighting also weighs the pair's own evidence (`EVIDENCE`: content similarity,
co-click Jaccard and count, the candidate's popularity), the signals of the simple lists the method
must beat: a list learnt over its inputs should never lose to one of them, and the bars' orders
are options judged beside it.

The held-out events are training events no stage-2 model saw. Their earlier part fits the maps
and the transition weights; their later part (never a test day) judges the choices; the maps and
weights are then refit on all of them. Pure: arrays and DataFrames in, a `Fusion` out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.calibration import (
    COCLICKS,
    COOCCURRENCE,
    ObjectiveCalibration,
    fit_objective,
    objective_score,
    pair_columns,
    side_cosines,
)
from models.evidence import EVIDENCE
from models.merge import rank_related
from models.metrics import per_source_figures, roc_auc
from models.vectors import ItemVectors
from models.weights import ObjectiveWeights, equal_weights, fit_transition_weights

log = logging.getLogger(__name__)

Vectors = Mapping[str, tuple[ItemVectors | None, ItemVectors | None]]
# Small enough to only break the ties of a bar's main signal (every signal here is at most ~20).
TIE = 1e-6
# The simple lists the method must beat, as weightings over the pair evidence: offered beside
# the learnt ones, so a log where one of them orders the validation slice clearly better gets it.
BARS = {
    "popularity": {"popularity": 1.0},
    "cooccurrence": {"cooccurrence": 1.0, "popularity": TIE},
    "content": {"content": 1.0, "popularity": TIE},
}
WEIGHTINGS = ("transitions", "equal", "retention", *BARS)
# The candidate's smoothed training rate of the subtracting objectives (its dislikes per event):
# the risk the guard keeps no higher than a bar's lists carry (`FusionSettings.risk_guard`).
RISK = "risk"


@dataclass(frozen=True)
class FusionObjective:
    name: str
    sign: int
    manual_weight: float


@dataclass(frozen=True)
class FusionSettings:
    at: int  # recall@at and NDCG@at judge the weightings
    select_on: tuple[str, ...]  # objectives whose recall and NDCG judge them
    learn_from: tuple[str, ...]  # the objectives whose held-out transitions teach the weights
    min_positives: int  # fewer positive pairs: no calibration for that objective
    validation_share: float  # the later share of the held-out events that judges
    prior_strength: float  # pseudo-events of the catalog's rate in a candidate's fallback rate
    two_tower_min_gain: float  # validation AUC the two-tower side must add to stay in
    listwise: bool  # transition weights by a softmax over each source's candidates
    selection_z: float  # standard errors another weighting must win by on validation
    evidence: tuple[str, ...] = ()  # of EVIDENCE: weighed beside the objectives by transitions
    popularity_of: str = "click"  # the objective whose training positives are "popularity"
    # Pairs that only fill a short list rank after the gated ones (True), by score among them
    # (False), or by score only where that lifts the validation lists (None: decided).
    gated_first: bool | None = False
    # A bar of BARS whose validation lists' mean RISK the list must not exceed ("none": off);
    # the penalties tried, in standard deviations of the score per standard deviation of RISK.
    risk_guard: str = "none"
    risk_penalties: tuple[float, ...] = (0.0,)


@dataclass
class Fusion:
    calibrations: dict[str, ObjectiveCalibration | None]
    weights: ObjectiveWeights  # the chosen weighting's
    weighting: str
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # option -> metrics
    two_tower: dict[str, dict[str, float]] = field(default_factory=dict)  # objective -> AUCs
    # The chosen weighting's validation figures per (metric, source), as `_judge` gives them:
    # what another fit of stage 2 is compared with (not saved).
    judged: pd.Series | None = field(default=None, repr=False, compare=False)
    risk: dict[str, float] = field(default_factory=dict)  # the risk guard's validation figures
    gated_first: bool = False  # fills rank after the gated pairs (as settings, or as decided)
    fills: dict[str, float] = field(default_factory=dict)  # the fill decision's figures

    def to_dict(self) -> dict:
        return {
            "weighting": self.weighting,
            "weights": self.weights.to_dict(),
            "calibrations": {
                name: None if c is None else c.to_dict() for name, c in self.calibrations.items()
            },
            "validation": self.validation,
            "two_tower": self.two_tower,
            "risk": self.risk,
            "gated_first": self.gated_first,
            "fills": self.fills,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Fusion:
        weights = dict(data["weights"])
        weights["clipped"] = tuple(weights.get("clipped", ()))
        return cls(
            {
                name: None if c is None else ObjectiveCalibration.from_dict(c)
                for name, c in data["calibrations"].items()
            },
            ObjectiveWeights(**weights),
            data["weighting"],
            dict(data.get("validation", {})),
            dict(data.get("two_tower", {})),
            risk=dict(data.get("risk", {})),
            gated_first=bool(data.get("gated_first", False)),
            fills=dict(data.get("fills", {})),
        )


def objective_scores(
    pairs: pd.DataFrame,
    vectors: Vectors,
    priors: pd.DataFrame,
    calibrations: Mapping[str, ObjectiveCalibration | None],
    objectives: Sequence[FusionObjective],
    prior_strength: float,
    two_tower: bool | None = None,
) -> dict[str, np.ndarray]:
    """s^k of every pair, per objective: calibrated where a calibration exists, else the
    candidate's smoothed rate of k in training (an engagement prior, never a constant)."""
    scores = {}
    for objective in objectives:
        calibration = calibrations.get(objective.name)
        if calibration is None:
            scores[objective.name] = fallback_rate(pairs, priors, objective.name, prior_strength)
            continue
        cosines = side_cosines(pairs, vectors.get(objective.name, (None, None)))
        shared = pair_columns(pairs, priors, objective.name)
        scores[objective.name] = objective_score(calibration, cosines, shared, two_tower)
    return scores


def fallback_rate(
    pairs: pd.DataFrame, priors: pd.DataFrame, name: str, strength: float
) -> np.ndarray:
    """(positives of k + strength * catalog rate) / (events + strength) of each candidate."""
    column = f"positives_{name}"
    if priors.empty or column not in priors:
        return np.zeros(len(pairs))
    events = priors["events"].astype(float)
    positives = priors[column].astype(float)
    rate = float(positives.sum() / events.sum()) if events.sum() > 0 else 0.0
    smoothed = (positives + strength * rate) / (events + strength)
    candidates = pairs["candidate_video_id"].astype(str)
    return candidates.map(smoothed).fillna(rate).to_numpy(dtype=np.float64)


def evidence_columns(
    pairs: pd.DataFrame, priors: pd.DataFrame, names: Sequence[str], popularity_of: str
) -> dict[str, np.ndarray]:
    """Per name of `names` (of EVIDENCE), the pair's evidence: content similarity, co-click
    Jaccard and log1p co-click count (the pairs' `cooccurrence` and `coclicks` columns; 0 where
    absent) and log1p of the candidate's training positives of `popularity_of`."""
    unknown = sorted(set(names) - set(EVIDENCE))
    if unknown:
        raise ValueError(f"evidence: {unknown} are not of {EVIDENCE}")
    columns = {}
    for name in names:
        if name == "content":
            columns[name] = pairs["content_similarity"].to_numpy(dtype=np.float64)
        elif name == "popularity":
            column = f"positives_{popularity_of}"
            positives = priors[column] if column in priors else pd.Series(dtype=float)
            candidates = pairs["candidate_video_id"].astype(str)
            values = candidates.map(positives).fillna(0.0).to_numpy(dtype=np.float64)
            columns[name] = np.log1p(values)
        else:
            column = COOCCURRENCE if name == "cooccurrence" else COCLICKS
            columns[name] = (
                pairs[column].to_numpy(dtype=np.float64)
                if column in pairs
                else np.zeros(len(pairs))
            )
    return columns


def signal_scores(
    pairs: pd.DataFrame,
    vectors: Vectors,
    priors: pd.DataFrame,
    calibrations: Mapping[str, ObjectiveCalibration | None],
    objectives: Sequence[FusionObjective],
    settings: FusionSettings,
    two_tower: bool | None = None,
) -> dict[str, np.ndarray]:
    """Every signal the merge weighs: each objective's s^k, then the pair's evidence, then (with
    a risk guard) the candidate's RISK."""
    scores = objective_scores(
        pairs, vectors, priors, calibrations, objectives, settings.prior_strength, two_tower
    )
    names = [o.name for o in objectives]
    clash = sorted(set(names) & {*settings.evidence, RISK})
    if clash:
        raise ValueError(f"evidence: {clash} are also objective names")
    scores |= evidence_columns(pairs, priors, settings.evidence, settings.popularity_of)
    if settings.risk_guard != "none":
        scores[RISK] = risk_column(pairs, priors, objectives, settings.prior_strength)
    return scores


def risk_column(
    pairs: pd.DataFrame,
    priors: pd.DataFrame,
    objectives: Sequence[FusionObjective],
    strength: float,
) -> np.ndarray:
    """Per pair, the candidate's smoothed training rate of every subtracting objective, summed:
    how often showing it went wrong before (0 without a subtracting objective)."""
    rates = [fallback_rate(pairs, priors, o.name, strength) for o in objectives if o.sign < 0]
    return np.sum(rates, axis=0) if rates else np.zeros(len(pairs))


def weighted_score(
    scores: Mapping[str, np.ndarray],
    objectives: Sequence[FusionObjective],
    weights: Mapping[str, float],
) -> np.ndarray:
    """sum_k sign_k a_k w_k s^k over the objectives, plus w_e x_e over any evidence weighed,
    less w_risk RISK."""
    total = np.sum(
        [o.sign * o.manual_weight * weights[o.name] * scores[o.name] for o in objectives], axis=0
    )
    names = {o.name for o in objectives}
    for name, weight in weights.items():
        if name not in names and weight:
            total = total + (-1 if name == RISK else 1) * weight * scores[name]
    return total


def fit_fusion(
    pairs: pd.DataFrame,
    vectors: Vectors,
    priors: pd.DataFrame,
    heldout: pd.DataFrame,
    objectives: Sequence[FusionObjective],
    settings: FusionSettings,
    retention: ObjectiveWeights | None,
    weighting: str = "auto",
) -> Fusion:
    """Calibrations, the two-tower decision and the weighting, from the held-out events
    (source_video_id, video_id, ts and label_<name> 0/1 per objective). `weighting`: "auto" (the
    option with the best validation figures), or one of WEIGHTINGS."""
    if weighting != "auto" and weighting not in WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r}: expected auto or one of {WEIGHTINGS}")
    heldout = heldout[heldout["source_video_id"].notna()]
    names = [o.name for o in objectives]
    early, late, calibrations, two_tower = _two_tower_decisions(
        pairs, vectors, priors, heldout, objectives, settings
    )
    options = {
        "transitions": _transition_weights(
            pairs, vectors, priors, early, calibrations, objectives, settings
        ),
        "equal": equal_weights(names),
        **({"retention": retention} if retention is not None else {}),
        **bar_weightings(names, settings.evidence),
    }
    cache: dict = {}  # every option is judged on the same signals
    judged = {
        option: _judge(
            pairs, vectors, priors, late, calibrations, objectives, w.weights, settings, cache
        )
        for option, w in options.items()
    }
    validation = {option: _figures(values) for option, values in judged.items()}
    chosen = weighting if weighting != "auto" else _best(judged, options, settings.selection_z)
    if chosen not in options:
        raise ValueError(
            f"weighting {chosen!r}: no such weighting here (no retention weights, or a bar over "
            "evidence that weights.evidence leaves out)"
        )
    # Refit on every held-out event, keeping the decisions made on the later slice.
    final = _calibrate(pairs, vectors, priors, heldout, objectives, settings)
    for name, calibration in calibrations.items():
        final[name] = _with_two_tower(
            final.get(name), calibration.use_two_tower if calibration else True
        )
    fills: dict[str, float] = {}
    if settings.gated_first is None:
        fills = _fill_decision(
            judged[chosen],
            pairs,
            vectors,
            priors,
            late,
            calibrations,
            objectives,
            options[chosen].weights,
            settings,
            cache,
        )
        settings = dataclasses.replace(settings, gated_first=not fills["kept"])
    penalty, risk = _risk_guard(
        pairs, vectors, priors, late, calibrations, objectives, options[chosen], settings, cache
    )
    weights = options[chosen]
    if chosen == "transitions":
        weights = _transition_weights(pairs, vectors, priors, heldout, final, objectives, settings)
    if penalty > 0:
        # The penalty is in standard deviations of the final weights' score on the same pairs.
        scores = signal_scores(cache["pairs"], vectors, priors, final, objectives, settings)
        unit = _risk_unit(scores, objectives, weights.weights)
        risk["weight"] = penalty * unit
        weights = dataclasses.replace(weights, weights={**weights.weights, RISK: penalty * unit})
    return Fusion(
        final,
        weights,
        chosen,
        validation,
        two_tower,
        judged[chosen],
        risk,
        bool(settings.gated_first),
        fills,
    )


def judge_two_towers(
    pairs: pd.DataFrame,
    vectors: Vectors,
    priors: pd.DataFrame,
    heldout: pd.DataFrame,
    objectives: Sequence[FusionObjective],
    settings: FusionSettings,
) -> dict[str, dict[str, float]]:
    """The two-tower test of `fit_fusion` alone (per objective: validation AUC with and without
    the side, then the validation lists), without fitting the weighting: what a cheap model
    (a probe) needs judged."""
    heldout = heldout[heldout["source_video_id"].notna()]
    return _two_tower_decisions(pairs, vectors, priors, heldout, objectives, settings)[3]


def _two_tower_decisions(pairs, vectors, priors, heldout, objectives, settings) -> tuple:
    """(early, late, calibrations, figures): the held-out events split by time, the
    calibrations fitted on the early ones with the two-tower sides that pass the tests on the
    late ones, and those tests' figures per objective."""
    if len(heldout):
        cut = heldout["ts"].quantile(1.0 - settings.validation_share)
        early, late = heldout[heldout["ts"] < cut], heldout[heldout["ts"] >= cut]
    else:
        early = late = heldout
    calibrations = _calibrate(pairs, vectors, priors, early, objectives, settings)
    two_tower = _two_tower_gain(pairs, vectors, priors, late, calibrations, objectives, settings)
    for name, figures in two_tower.items():
        keep = figures["gain"] >= settings.two_tower_min_gain
        figures["kept"] = keep
        calibrations[name] = _with_two_tower(calibrations[name], keep)
        if not keep:
            log.warning(
                "two-tower-%s adds nothing over ALS on validation (AUC %.4f with it, %.4f "
                "without): left out of the fusion; training.two_tower_skip can stop training it",
                name,
                figures["with"],
                figures["without"],
            )
    _two_tower_list_gain(
        pairs, vectors, priors, early, late, calibrations, objectives, settings, two_tower
    )
    return early, late, calibrations, two_tower


def two_tower_sides(calibrations: Mapping[str, ObjectiveCalibration | None]) -> list[str]:
    """The objectives whose two-tower side these calibrations (a fusion's) keep."""
    return [
        name
        for name, c in calibrations.items()
        if c is not None and c.use_two_tower and "two_tower" in c.sides
    ]


def paired_gain(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """The mean of `a - b` over the (metric, source) entries both judged, and its standard
    error: how much one fit's validation lists beat another's, paired source by source."""
    difference = (a - b).dropna()
    gain = float(difference.mean()) if len(difference) else 0.0
    error = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
    return gain, error


def lifts(gain: float, error: float, z: float) -> bool:
    """A gain beyond `z` standard errors: what a model must show to earn its cost."""
    return gain > 0 and gain > z * error


def bar_weightings(names: Sequence[str], evidence: Sequence[str]) -> dict[str, ObjectiveWeights]:
    """The bars of BARS whose signals are all weighed evidence, as weightings (objectives 0)."""
    offered = {}
    for bar, signals in BARS.items():
        if set(signals) <= set(evidence):
            weights = {name: 0.0 for name in names} | {e: signals.get(e, 0.0) for e in evidence}
            offered[bar] = ObjectiveWeights(
                weights=weights,
                coefficients=dict.fromkeys(weights, 0.0),
                clipped=(),
                intercept=0.0,
                n_users=0,
                retained_share=0.0,
                method=bar,
            )
    return offered


def _with_two_tower(
    calibration: ObjectiveCalibration | None, keep: bool
) -> ObjectiveCalibration | None:
    if calibration is None:
        return None
    return ObjectiveCalibration(calibration.sides, calibration.prior, keep, calibration.auc)


def _population(
    pairs: pd.DataFrame, heldout: pd.DataFrame, name: str, shown: bool = False
) -> tuple[pd.DataFrame, np.ndarray]:
    """The candidate pairs of the sources with a held-out positive of `name` (with `shown`: the
    candidate pairs held-out events showed), and per pair whether it was a positive."""
    column = f"label_{name}"
    if column not in heldout or heldout.empty:
        return pairs.iloc[:0], np.zeros(0, dtype=bool)
    keys = ["source_video_id", "video_id"]
    positive = heldout.loc[heldout[column] == 1, keys].astype(str).drop_duplicates()
    key = pd.MultiIndex.from_arrays(
        [pairs["source_video_id"].astype(str), pairs["candidate_video_id"].astype(str)]
    )
    if shown:
        chosen = key.isin(pd.MultiIndex.from_frame(heldout[keys].astype(str)))
    else:
        chosen = pairs["source_video_id"].astype(str).isin(positive["source_video_id"]).to_numpy()
    label = key[chosen].isin(pd.MultiIndex.from_frame(positive))
    return pairs[chosen].reset_index(drop=True), np.asarray(label)


def _objective_population(pairs, heldout, objective: FusionObjective):
    """A positive objective's s^k is the chance that a candidate becomes a transition of k; a
    subtracting one's (dislike) the risk of k when the pair is shown, as the offline dislike
    rate counts it: calibrated on the shown pairs."""
    return _population(pairs, heldout, objective.name, shown=objective.sign < 0)


def _calibrate(pairs, vectors, priors, heldout, objectives, settings):
    calibrations: dict[str, ObjectiveCalibration | None] = {}
    for objective in objectives:
        chosen, label = _objective_population(pairs, heldout, objective)
        cosines = side_cosines(chosen, vectors.get(objective.name, (None, None)))
        shared = pair_columns(chosen, priors, objective.name)
        calibrations[objective.name] = (
            fit_objective(chosen, label, cosines, shared, settings.min_positives)
            if len(chosen)
            else None
        )
        if calibrations[objective.name] is None:
            log.warning(
                "calibration: %s has %d held-out positive pair(s) among the candidates (fewer "
                "than %d): its score is the candidate's training rate",
                objective.name,
                int(label.sum()),
                settings.min_positives,
            )
    return calibrations


def _two_tower_gain(pairs, vectors, priors, heldout, calibrations, objectives, settings):
    """Per objective with a calibrated two-tower side: validation AUC of s^k with and without it."""
    figures = {}
    for objective in objectives:
        calibration = calibrations.get(objective.name)
        if calibration is None or "two_tower" not in calibration.sides:
            continue
        chosen, label = _objective_population(pairs, heldout, objective)
        if not len(chosen) or label.all() or not label.any():
            continue
        cosines = side_cosines(chosen, vectors.get(objective.name, (None, None)))
        shared = pair_columns(chosen, priors, objective.name)
        with_it = roc_auc(label, objective_score(calibration, cosines, shared, True))
        without = roc_auc(label, objective_score(calibration, cosines, shared, False))
        figures[objective.name] = {"with": with_it, "without": without, "gain": with_it - without}
    return figures


def _two_tower_list_gain(
    pairs, vectors, priors, early, late, calibrations, objectives, settings, figures
) -> None:
    """Per objective whose two-tower side passed the AUC test: the validation lists (recall and
    NDCG of `settings.select_on`, transition weights learnt on `early`) with the side against
    without it. The side stays only where it lifts them by more than `settings.selection_z`
    standard errors of the paired difference: a model must earn its cost on what the list is
    for. Updates `calibrations` and `figures` (list_gain, list_error, kept) in place."""
    kept = [name for name in two_tower_sides(calibrations) if name in figures]
    if not kept:
        return
    weights = _transition_weights(
        pairs, vectors, priors, early, calibrations, objectives, settings
    ).weights
    with_all = _judge(pairs, vectors, priors, late, calibrations, objectives, weights, settings)
    for name in kept:
        without = {**calibrations, name: _with_two_tower(calibrations[name], False)}
        judged = _judge(pairs, vectors, priors, late, without, objectives, weights, settings)
        gain, error = paired_gain(with_all, judged)
        keep = lifts(gain, error, settings.selection_z)
        figures[name].update(list_gain=gain, list_error=error, kept=keep)
        if not keep:
            calibrations[name] = _with_two_tower(calibrations[name], False)
            log.warning(
                "two-tower-%s does not lift the validation lists (%+.4f, standard error %.4f, "
                "recall and NDCG of %s): left out of the fusion; the production fit skips it",
                name,
                gain,
                error,
                ", ".join(settings.select_on),
            )


def _transition_weights(pairs, vectors, priors, heldout, calibrations, objectives, settings):
    """The mean of the transition weights learnt on each objective of `settings.learn_from`
    (each objective's own view of what predicts its transitions), over the objectives' scores
    and the evidence of `settings.evidence` (which can only add)."""
    signs = {o.name: o.sign for o in objectives} | {name: 1 for name in settings.evidence}
    fitted = []
    satisfied = _satisfied(heldout, objectives)
    for name in settings.learn_from:
        chosen, label = _population(pairs, satisfied, name)
        scores = signal_scores(chosen, vectors, priors, calibrations, objectives, settings)
        scores.pop(RISK, None)  # the guard sets its weight, not the transitions
        groups = chosen["source_video_id"].to_numpy() if settings.listwise else None
        fitted.append(fit_transition_weights(scores, label, signs, groups))
    if len(fitted) == 1:
        return fitted[0]
    names = list(signs)
    mean = {k: float(np.mean([f.weights[k] for f in fitted])) for k in names}
    return ObjectiveWeights(
        weights=mean,
        coefficients={k: float(np.mean([f.coefficients[k] for f in fitted])) for k in names},
        clipped=tuple(k for k in names if all(k in f.clipped for f in fitted)),
        intercept=float(np.mean([f.intercept for f in fitted])),
        n_users=int(sum(f.n_users for f in fitted)),
        retained_share=float(np.mean([f.retained_share for f in fitted])),
        method="transitions",
    )


def _satisfied(heldout: pd.DataFrame, objectives: Sequence[FusionObjective]) -> pd.DataFrame:
    """The held-out events with every positive label cleared where a subtracting objective
    fired (a disliked click is no transition to learn from): what the weights learn from."""
    negative = [f"label_{o.name}" for o in objectives if o.sign < 0]
    negative = [column for column in negative if column in heldout]
    if not negative:
        return heldout
    fired = heldout[negative].to_numpy().any(axis=1)
    positive = [f"label_{o.name}" for o in objectives if o.sign > 0]
    cleared = {c: heldout[c].where(~fired, 0) for c in positive if c in heldout}
    return heldout.assign(**cleared)


def _fill_decision(
    by_score, pairs, vectors, priors, heldout, calibrations, objectives, weights, settings, cache
) -> dict[str, float]:
    """Whether the pairs that only fill a short list may outrank its gated ones by score: only
    where that lifts the validation lists (`by_score`, judged so) over the gated pairs first by
    more than `settings.selection_z` standard errors of the paired difference. The gate is the
    method's promise; a data set must show that breaking it for short lists pays."""
    first = dataclasses.replace(settings, gated_first=True)
    gated = _judge(pairs, vectors, priors, heldout, calibrations, objectives, weights, first, cache)
    gain, error = paired_gain(by_score, gated)
    kept = lifts(gain, error, settings.selection_z)
    log.info(
        "fills: ranked by score they move the validation lists by %+.4f (standard error %.4f) "
        "against the gated pairs first: %s",
        gain,
        error,
        "by score" if kept else "after the gated pairs",
    )
    return {"gain": gain, "error": error, "kept": kept}


def _risk_guard(
    pairs, vectors, priors, heldout, calibrations, objectives, chosen, settings, cache
) -> tuple[float, dict[str, float]]:
    """The smallest of `settings.risk_penalties` (standard deviations of the chosen weighting's
    score per standard deviation of RISK, subtracted) under which the validation lists carry no
    more RISK than the `settings.risk_guard` bar's lists on the same sources, beyond
    `settings.selection_z` standard errors of the paired difference (a noisy slice must not pass
    a riskier list), and the figures: each list's mean risk, the guarded lists' recall and NDCG.
    (0, {}) when the guard is off or has no bar; 0 and the figures when the list is no riskier
    or the risk does not vary; the largest penalty, warned, when none suffices."""
    if settings.risk_guard == "none" or not any(o.sign < 0 for o in objectives):
        return 0.0, {}
    names = [o.name for o in objectives]
    bar = bar_weightings(names, settings.evidence).get(settings.risk_guard)
    if bar is None:
        log.warning(
            "risk guard: the %s bar needs weights.evidence %s: no guard",
            settings.risk_guard,
            sorted(BARS.get(settings.risk_guard, {})),
        )
        return 0.0, {}
    # `cache` holds the validation pairs and their signals, as judging the weightings left them.
    chosen_pairs, scores = cache["pairs"], cache["scores"]
    if not len(chosen_pairs):
        return 0.0, {}
    risk = scores[RISK]

    def excess(score: np.ndarray) -> tuple[float, float]:
        """The list's mean risk, and its paired excess over the bar's plus z standard errors."""
        mine = _list_risk(chosen_pairs, score, risk, settings)
        gain, error = paired_gain(mine, target)
        return float(mine.mean()), gain + settings.selection_z * error

    target = _list_risk(
        chosen_pairs, weighted_score(scores, objectives, bar.weights), risk, settings
    )
    unit = _risk_unit(scores, objectives, chosen.weights)
    base = weighted_score(scores, objectives, chosen.weights)
    before, margin = excess(base)
    figures = {
        "bar_risk": float(target.mean()),
        "risk_before": before,
        "penalty": 0.0,
        "risk_after": before,
    }
    penalties = sorted(p for p in settings.risk_penalties if p > 0)
    if unit == 0 or margin <= 0 or not penalties:
        log.info(
            "risk guard: no penalty (the validation lists' mean risk %.5f, the %s bar's %.5f)",
            before,
            settings.risk_guard,
            figures["bar_risk"],
        )
        return 0.0, figures
    for penalty in penalties:
        after, margin = excess(base - penalty * unit * risk)
        if margin <= 0:
            break
    if margin > 0:
        log.warning(
            "risk guard: even the largest penalty (%s) leaves the validation lists' mean risk "
            "%.5f not clearly below the %s bar's %.5f",
            penalty,
            after,
            settings.risk_guard,
            figures["bar_risk"],
        )
    guarded = {**chosen.weights, RISK: penalty * unit}
    judged = _judge(
        pairs, vectors, priors, heldout, calibrations, objectives, guarded, settings, cache
    )
    figures |= {"penalty": penalty, "risk_after": after, **_figures(judged)}
    log.info(
        "risk guard: penalty %s lowers the validation lists' mean risk from %.5f to %.5f (the %s "
        "bar's: %.5f); validation %s",
        penalty,
        before,
        after,
        settings.risk_guard,
        figures["bar_risk"],
        ", ".join(f"{k} {v:.4f}" for k, v in _figures(judged).items()),
    )
    return penalty, figures


def _risk_unit(scores, objectives, weights) -> float:
    """Standard deviations of the weighted score per standard deviation of RISK (0 where either
    is constant): the scale of a risk penalty."""
    risk = scores[RISK].std()
    score = weighted_score(scores, objectives, {k: v for k, v in weights.items() if k != RISK})
    return float(score.std() / risk) if risk > 0 and score.std() > 0 else 0.0


def _list_risk(pairs, score, risk, settings) -> pd.Series:
    """Per source, the mean RISK of the top `settings.at` rows of its list under `score`."""
    lists = pairs.assign(score=score, **{RISK: risk})
    top = rank_related(lists, settings.at, settings.gated_first)
    return top.groupby("source_video_id", sort=True)[RISK].mean()


def _judge(
    pairs, vectors, priors, heldout, calibrations, objectives, weights, settings, cache=None
):
    """The lists one weighting gives the validation sources, judged: per objective of
    `settings.select_on`, the hit share (recall) and NDCG of each source with positives, as a
    Series indexed by (metric, source); `_figures` turns it into the means. `cache`: a dict
    kept across calls with the same pairs, held-out events and calibrations, so the signals
    (cosines above all) are computed once for every weighting judged."""
    cache = {} if cache is None else cache
    if "scores" not in cache:
        sources = heldout["source_video_id"].astype(str).unique()
        chosen = pairs[pairs["source_video_id"].astype(str).isin(sources)].reset_index(drop=True)
        cache["pairs"] = chosen
        cache["scores"] = signal_scores(chosen, vectors, priors, calibrations, objectives, settings)
    chosen, scores = cache["pairs"], cache["scores"]
    lists = chosen.assign(score=weighted_score(scores, objectives, weights))
    lists = rank_related(lists, settings.at, settings.gated_first).rename(
        columns={"source_video_id": "video_id", "candidate_video_id": "related_video_id"}
    )
    parts = []
    for name in settings.select_on:
        column = f"label_{name}"
        if column not in heldout:
            continue
        positives = heldout.loc[heldout[column] == 1, ["source_video_id", "video_id"]]
        positives = positives.astype(str).drop_duplicates()
        for metric, values in per_source_figures(lists, positives, settings.at).items():
            parts.append(values.rename(f"{metric}_{name}"))
    if not parts:
        return pd.Series(dtype=float)
    return pd.concat({part.name: part for part in parts})


def _figures(judged: pd.Series) -> dict[str, float]:
    """Mean of each metric over its sources."""
    if judged.empty:
        return {}
    return {str(k): float(v) for k, v in judged.groupby(level=0, sort=False).mean().items()}


def _best(judged: Mapping[str, pd.Series], options: Mapping, z: float) -> str:
    """The first of WEIGHTINGS that is offered, unless another beats it on the validation
    sources by more than `z` standard errors of the paired mean difference (every metric of
    every source one value): a small validation slice must not pick an option by chance."""
    order = [name for name in WEIGHTINGS if name in options]
    preferred = order[0]
    best, best_gain = preferred, 0.0
    for name in order[1:]:
        difference = (judged[name] - judged[preferred]).dropna()
        if len(difference) < 2:
            continue
        gain = float(difference.mean())
        error = float(difference.std(ddof=1) / np.sqrt(len(difference)))
        if gain > best_gain and (error == 0 or gain > z * error):
            best, best_gain = name, gain
    return best
