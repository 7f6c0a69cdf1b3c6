"""Calibration of the per-objective cosines: Platt maps increasing in the cosine, the max over the
sides on one scale, the prior where no side knows a pair, and the fusion's choices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.calibration import (
    fit_objective,
    fit_platt,
    objective_score,
    pair_columns,
    side_cosines,
)
from models.fusion import (
    RISK,
    FusionObjective,
    FusionSettings,
    _best,
    bar_weightings,
    evidence_columns,
    fallback_rate,
    fit_fusion,
    objective_scores,
    risk_column,
    signal_scores,
    weighted_score,
)
from models.merge import rank_related
from models.vectors import ItemVectors
from models.weights import fit_objective_weights, fit_transition_weights

RNG = np.random.default_rng(5)


def test_platt_is_increasing_in_the_cosine():
    cosine = RNG.uniform(-1, 1, 4000)
    label = RNG.random(4000) < 1 / (1 + np.exp(-(3 * cosine - 2)))
    platt = fit_platt({"cosine": cosine}, label, monotone=("cosine",))
    grid = np.linspace(-1, 1, 50)
    p = platt.predict({"cosine": grid})
    assert np.all(np.diff(p) > 0)
    assert 0 < p.min() < p.max() < 1


def test_a_cosine_that_predicts_fewer_positives_is_dropped_not_inverted():
    cosine = RNG.uniform(-1, 1, 4000)
    content = RNG.uniform(0.6, 1, 4000)
    label = RNG.random(4000) < 1 / (1 + np.exp(-(-3 * cosine + 4 * content - 4)))
    platt = fit_platt({"cosine": cosine, "content": content}, label, monotone=("cosine",))
    assert platt.coefficient("cosine") == 0.0
    assert platt.coefficient("content") > 0
    p = platt.predict({"cosine": np.linspace(-1, 1, 20), "content": np.full(20, 0.8)})
    assert np.ptp(p) == 0  # flat in the cosine, never falling


def test_one_class_labels_are_refused():
    with pytest.raises(ValueError, match="both positives and negatives"):
        fit_platt({"cosine": np.arange(5.0)}, np.zeros(5))


def _vectors(ids: list[str], rows: np.ndarray) -> ItemVectors:
    return ItemVectors.from_raw(np.array(ids), rows)


def _one_source_pairs(n: int) -> pd.DataFrame:
    """`n` candidate pairs of one source, with content similarities above the gate."""
    return pd.DataFrame(
        {
            "source_video_id": ["s"] * n,
            "candidate_video_id": [f"c{i}" for i in range(n)],
            "content_similarity": RNG.uniform(0.65, 1, n),
        }
    )


def test_the_max_is_taken_on_the_calibrated_scale_and_missing_sides_fall_back():
    # ALS cosines of 0.3 and two-tower cosines of 0.95 mean the same here: the saturated side
    # must not win on its raw value.
    n = 3000
    pairs = _one_source_pairs(n)
    als_cos = RNG.uniform(-0.2, 0.6, n)
    tower_cos = 0.9 + 0.1 * RNG.random(n)  # saturated, no signal
    label = RNG.random(n) < 1 / (1 + np.exp(-(8 * als_cos - 5)))
    shared = pair_columns(pairs, pd.DataFrame(index=pd.Index([], name="video_id")), "click")
    calibration = fit_objective(
        pairs, label, {"als": als_cos, "two_tower": tower_cos}, shared, min_positives=5
    )
    assert calibration is not None
    score = objective_score(calibration, {"als": als_cos, "two_tower": tower_cos}, shared)
    # The order follows the informative ALS side wherever it is confident.
    top = np.argsort(-score)[:200]
    assert als_cos[top].mean() > als_cos.mean() + 0.2
    # A pair no side knows gets the prior model's value, not 0 or a constant of the sides.
    missing = {"als": np.full(n, np.nan), "two_tower": np.full(n, np.nan)}
    prior = objective_score(calibration, missing, shared)
    np.testing.assert_allclose(prior, calibration.prior.predict(shared))


def test_a_side_whose_cosine_does_not_help_is_left_out_and_the_prior_ranks():
    # Every pair has a two-tower vector whose cosine predicts fewer positives: its map would be
    # one constant for every pair, hiding the prior model's order under a flat floor.
    n = 3000
    pairs = _one_source_pairs(n)
    tower_cos = RNG.uniform(-1, 1, n)
    content = pairs["content_similarity"].to_numpy()
    label = RNG.random(n) < 1 / (1 + np.exp(-(-2 * tower_cos + 12 * content - 14)))
    shared = pair_columns(pairs, pd.DataFrame(index=pd.Index([], name="video_id")), "dislike")
    cosines = {"als": np.full(n, np.nan), "two_tower": tower_cos}
    calibration = fit_objective(pairs, label, cosines, shared, min_positives=5)
    assert calibration is not None and "two_tower" not in calibration.sides
    score = objective_score(calibration, cosines, shared)
    assert np.unique(score).size > n // 2
    np.testing.assert_allclose(score, calibration.prior.predict(shared))


def test_the_fallback_rate_is_an_engagement_prior_not_a_constant():
    priors = pd.DataFrame(
        {"events": [100, 10, 0], "positives_click": [50, 1, 0]},
        index=pd.Index(["a", "b", "c"], name="video_id"),
    )
    pairs = pd.DataFrame({"candidate_video_id": ["a", "b", "c", "unknown"]})
    rate = fallback_rate(pairs, priors, "click", strength=10)
    catalog = 51 / 110
    np.testing.assert_allclose(
        rate,
        [(50 + 10 * catalog) / 110, (1 + 10 * catalog) / 20, catalog, catalog],
    )
    assert rate[0] > rate[2] > rate[1]


def test_transition_weights_are_non_negative_on_the_signed_scores():
    n = 5000
    click = RNG.random(n)
    dislike = RNG.random(n)
    noise = RNG.random(n)
    label = RNG.random(n) < 1 / (1 + np.exp(-(4 * click - 3 * dislike - 1)))
    weights = fit_transition_weights(
        {"click": click, "dislike": dislike, "like": noise},
        label,
        {"click": 1, "dislike": -1, "like": 1},
    )
    assert weights.method == "transitions"
    assert weights.weights["click"] > weights.weights["like"]
    assert weights.weights["dislike"] > 0.1  # dislike subtracts, with weight
    assert all(v >= 0 for v in weights.weights.values())
    assert abs(sum(weights.weights.values()) - 1) < 1e-9
    # A dislike score that goes with MORE transitions cannot add to the score: clipped to 0.
    label = RNG.random(n) < 1 / (1 + np.exp(-(4 * click + 3 * dislike - 4)))
    clipped = fit_transition_weights(
        {"click": click, "dislike": dislike}, label, {"click": 1, "dislike": -1}
    )
    assert clipped.weights["dislike"] == 0.0 and "dislike" in clipped.clipped


def _transitions(pairs: pd.DataFrame, chance: np.ndarray, rng: np.random.Generator):
    """Held-out clicks over 10 days: each day every pair is a transition with its `chance`."""
    rows = []
    for day in range(10):
        chosen = rng.random(len(pairs)) < chance
        for source, video in pairs.loc[chosen, PAIR_KEYS].itertuples(index=False):
            rows.append(
                (source, video, pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=day))
            )
    heldout = pd.DataFrame(rows, columns=["source_video_id", "video_id", "ts"])
    return heldout.assign(label_click=1)


def _world(n_sources: int = 60, n_candidates: int = 30, seed: int = 3):
    """Candidate pairs, ALS vectors that know the truth, a saturated two-tower that does not,
    priors, and held-out events whose transitions follow the ALS similarity."""
    rng = np.random.default_rng(seed)
    ids = [f"v{i:03d}" for i in range(n_sources + n_candidates)]
    latent = rng.normal(size=(len(ids), 4))
    sources, candidates = ids[:n_sources], ids[n_sources:]
    pairs = pd.DataFrame(
        [(s, c) for s in sources for c in candidates],
        columns=["source_video_id", "candidate_video_id"],
    )
    pairs["content_similarity"] = rng.uniform(0.65, 1, len(pairs)).round(3)
    als = _vectors(ids, latent)
    tower = _vectors(ids, np.c_[np.ones(len(ids)), 0.01 * rng.normal(size=(len(ids), 3))])
    cosine = als.pair_cosine(pairs["source_video_id"], pairs["candidate_video_id"])
    heldout = _transitions(pairs, 0.02 * np.exp(2 * cosine), rng)
    heldout["label_dislike"] = (rng.random(len(heldout)) < 0.05).astype(int)
    priors = pd.DataFrame(
        {
            "events": rng.integers(1, 50, len(ids)),
            "positives_click": rng.integers(0, 10, len(ids)),
            "positives_dislike": rng.integers(0, 2, len(ids)),
        },
        index=pd.Index(ids, name="video_id"),
    )
    vectors = {"click": (als, tower), "dislike": (None, None)}
    return pairs, vectors, priors, heldout


PAIR_KEYS = ["source_video_id", "candidate_video_id"]
OBJECTIVES = [FusionObjective("click", 1, 1.0), FusionObjective("dislike", -1, 1.0)]
SETTINGS = FusionSettings(
    at=5,
    select_on=("click",),
    learn_from=("click",),
    min_positives=10,
    validation_share=0.5,
    prior_strength=20.0,
    two_tower_min_gain=0.0,
    listwise=True,
    selection_z=1.645,
)


def test_fusion_leaves_out_a_two_tower_that_adds_nothing_and_picks_a_weighting():
    pairs, vectors, priors, heldout = _world()
    fusion = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, SETTINGS, None)
    assert not fusion.calibrations["click"].use_two_tower
    assert fusion.two_tower["click"]["gain"] <= 0
    assert fusion.weighting in ("transitions", "equal")
    assert set(fusion.validation) == {"transitions", "equal"}
    # Round trip through the JSON form the steps log.
    again = type(fusion).from_dict(fusion.to_dict())
    scores = objective_scores(pairs, vectors, priors, again.calibrations, OBJECTIVES, 20.0)
    first = objective_scores(pairs, vectors, priors, fusion.calibrations, OBJECTIVES, 20.0)
    np.testing.assert_allclose(scores["click"], first["click"])
    # Scores vary within lists: no list is one tied score.
    per_list = pd.Series(scores["click"]).groupby(pairs["source_video_id"]).nunique()
    assert (per_list > 1).all()


def test_a_named_weighting_is_used_and_an_unknown_one_refused():
    pairs, vectors, priors, heldout = _world()
    fusion = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, SETTINGS, None, "equal")
    assert fusion.weighting == "equal"
    with pytest.raises(ValueError, match="weighting"):
        fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, SETTINGS, None, "magic")
    with pytest.raises(ValueError, match="no retention"):
        fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, SETTINGS, None, "retention")


def test_retention_weights_are_an_option_when_given():
    pairs, vectors, priors, heldout = _world()
    users = pd.DataFrame(
        {"click": RNG.random(200), "dislike": RNG.random(200)},
        index=pd.Index([f"u{i}" for i in range(200)], name="user_id"),
    )
    retained = pd.Series(RNG.random(200) < users["click"], index=users.index)
    retention = fit_objective_weights(users, retained, {"click": 1, "dislike": -1}, seed=1)
    fusion = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, SETTINGS, retention)
    assert set(fusion.validation) == {"transitions", "equal", "retention"}


def test_side_cosines_are_nan_where_a_side_has_no_vector():
    pairs = pd.DataFrame({"source_video_id": ["a", "a"], "candidate_video_id": ["b", "z"]})
    als = _vectors(["a", "b"], np.array([[1.0, 0.0], [1.0, 1.0]]))
    cosines = side_cosines(pairs, (als, None))
    assert np.isclose(cosines["als"][0], np.sqrt(0.5)) and np.isnan(cosines["als"][1])
    assert np.isnan(cosines["two_tower"]).all()


def test_a_weighting_must_beat_the_preferred_one_beyond_noise_to_be_chosen():
    index = pd.Index(range(200))
    base = pd.Series(RNG.random(200), index=index)
    noisy = base + RNG.normal(0, 0.05, 200)  # no real gain
    better = base + 0.05  # every source gains
    options = {"transitions": None, "equal": None, "retention": None}
    judged = {"transitions": base, "equal": noisy, "retention": base - 0.01}
    assert _best(judged, options, z=1.645) == "transitions"
    judged["equal"] = better
    assert _best(judged, options, z=1.645) == "equal"
    # Without transitions (no held-out transitions), equal is preferred.
    assert _best({"equal": base, "retention": base}, {"equal": 0, "retention": 0}, 1.645) == "equal"


def test_per_source_figures_average_to_the_metrics():
    from models.metrics import ndcg_at_n, per_source_figures, recall_at_n

    lists = pd.DataFrame(
        {
            "video_id": ["a"] * 3 + ["b"] * 3,
            "rank": [1, 2, 3] * 2,
            "related_video_id": ["x", "y", "z", "x", "y", "z"],
        }
    )
    positives = pd.DataFrame(
        {"source_video_id": ["a", "a", "b", "c"], "video_id": ["y", "q", "z", "x"]}
    )
    figures = per_source_figures(lists, positives, 3)
    assert figures["recall"].mean() == pytest.approx(recall_at_n(lists, positives, 3))
    assert figures["ndcg"].mean() == pytest.approx(ndcg_at_n(lists, positives, 3))


def test_the_transition_weighting_weighs_the_pairs_evidence_beside_the_objectives():
    # Transitions here follow the co-click Jaccard of the pair, which no model vector knows.
    pairs, vectors, priors, _ = _world()
    rng = np.random.default_rng(11)
    pairs["cooccurrence"] = rng.random(len(pairs)) ** 3
    heldout = _transitions(pairs, 0.01 * np.exp(4 * pairs["cooccurrence"].to_numpy()), rng)
    heldout["label_dislike"] = 0
    evidence = dataclasses.replace(SETTINGS, evidence=("cooccurrence", "popularity"))
    fusion = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, evidence, None, "transitions")
    weights = fusion.weights.weights
    assert set(weights) == {"click", "dislike", "cooccurrence", "popularity"}
    assert weights["cooccurrence"] > 0 and all(v >= 0 for v in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0)
    # The evidence adds to the score with its weight; objective-only weights leave it out.
    scores = signal_scores(pairs, vectors, priors, fusion.calibrations, OBJECTIVES, evidence)
    assert set(scores) == set(weights)
    with_evidence = weighted_score(scores, OBJECTIVES, weights)
    without = weighted_score(scores, OBJECTIVES, {"click": 1.0, "dislike": 1.0})
    np.testing.assert_allclose(
        with_evidence - weights["cooccurrence"] * scores["cooccurrence"],
        weighted_score(scores, OBJECTIVES, {**weights, "cooccurrence": 0.0}),
    )
    assert not np.allclose(with_evidence, without)
    # Validated on the later slice, weighing the evidence orders the lists no worse than not.
    plain = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, SETTINGS, None, "transitions")
    assert (
        fusion.validation["transitions"]["recall_click"]
        >= plain.validation["transitions"]["recall_click"]
    )


def test_evidence_columns_read_the_pairs_and_the_priors():
    priors = pd.DataFrame(
        {"events": [9, 3], "positives_click": [7, 0]}, index=pd.Index(["a", "b"], name="video_id")
    )
    pairs = pd.DataFrame(
        {
            "source_video_id": ["s", "s", "s"],
            "candidate_video_id": ["a", "b", "z"],
            "content_similarity": [0.9, 0.8, 0.7],
        }
    )
    columns = evidence_columns(pairs, priors, ["content", "popularity", "cooccurrence"], "click")
    np.testing.assert_allclose(columns["content"], [0.9, 0.8, 0.7])
    np.testing.assert_allclose(columns["popularity"], np.log1p([7, 0, 0]))
    np.testing.assert_allclose(columns["cooccurrence"], 0.0)  # the pairs carry no co-clicks
    with pytest.raises(ValueError, match="not of"):
        evidence_columns(pairs, priors, ["recency"], "click")


def test_the_simple_bars_are_weightings_judged_beside_the_learnt_ones():
    pairs, vectors, priors, heldout = _world()
    evidence = dataclasses.replace(SETTINGS, evidence=("content", "popularity"))
    fusion = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, evidence, None)
    # Only the bars whose signals are weighed evidence are offered (no co-occurrence here).
    assert {"popularity", "content"} <= set(fusion.validation)
    assert "cooccurrence" not in fusion.validation
    chosen = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, evidence, None, "popularity")
    weights = chosen.weights.weights
    assert chosen.weighting == "popularity" and weights["popularity"] == 1.0
    assert weights["click"] == weights["dislike"] == weights["content"] == 0.0
    # Its lists are the candidates by popularity, ties by content similarity: the bar's order.
    scores = signal_scores(pairs, vectors, priors, chosen.calibrations, OBJECTIVES, evidence)
    ranked = pairs.assign(
        score=weighted_score(scores, OBJECTIVES, weights), clicks=scores["popularity"]
    )
    mine = rank_related(ranked, 5)
    bar = ranked.sort_values(
        ["source_video_id", "clicks", "content_similarity", "candidate_video_id"],
        ascending=[True, False, False, True],
    )
    bar = bar.groupby("source_video_id").head(5)
    assert mine["candidate_video_id"].tolist() == bar["candidate_video_id"].tolist()
    # The learnt weighting, which knows the truth here, is not displaced by a bar.
    assert fusion.weighting == "transitions"
    with pytest.raises(ValueError, match="leaves out"):
        fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, SETTINGS, None, "popularity")


def test_a_two_tower_stays_only_where_it_lifts_the_validation_lists():
    pairs, vectors, priors, heldout = _world()
    als, tower = vectors["click"]
    # Past the AUC test (no minimum gain), a tower that knows nothing changes no list for the
    # better: it is left out, and the figures say why.
    lenient = dataclasses.replace(SETTINGS, two_tower_min_gain=-1.0)
    fusion = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, lenient, None)
    figures = fusion.two_tower["click"]
    assert figures["gain"] < 0 and figures["kept"] is False and "list_gain" in figures
    assert not fusion.calibrations["click"].use_two_tower
    # A tower that knows what the ALS side does not earns its place on the lists.
    swapped = {**vectors, "click": (tower, als)}
    fusion = fit_fusion(pairs, swapped, priors, heldout, OBJECTIVES, lenient, None)
    figures = fusion.two_tower["click"]
    assert figures["kept"] is True and figures["list_gain"] > 0
    assert fusion.calibrations["click"].use_two_tower


def _risky_world(seed: int = 7):
    """The pairs of `_world`, but transitions go to popular candidates and the popular ones are
    also the often disliked: what the transitions alone would fill the lists with."""
    pairs, vectors, priors, _ = _world(seed=seed)
    rng = np.random.default_rng(seed)
    clicks = rng.integers(0, 40, len(priors))
    priors = priors.assign(
        events=60, positives_click=clicks, positives_dislike=np.maximum(clicks - 25, 0)
    )
    popular = pairs["candidate_video_id"].map(priors["positives_click"]).to_numpy()
    heldout = _transitions(pairs, 0.002 * np.exp(0.1 * popular), rng)
    heldout["label_dislike"] = (rng.random(len(heldout)) < 0.05).astype(int)
    return pairs, vectors, priors, heldout


def _mean_top_risk(pairs, vectors, priors, fusion, settings) -> float:
    scores = signal_scores(pairs, vectors, priors, fusion.calibrations, OBJECTIVES, settings)
    ranked = pairs.assign(
        score=weighted_score(scores, OBJECTIVES, fusion.weights.weights), risk=scores[RISK]
    )
    return float(rank_related(ranked, 5)["risk"].mean())


def test_the_risk_guard_keeps_the_list_no_riskier_than_the_content_bar():
    pairs, vectors, priors, heldout = _risky_world()
    evidence = dataclasses.replace(SETTINGS, evidence=("content", "popularity"))
    guarded = dataclasses.replace(
        evidence, risk_guard="content", risk_penalties=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0)
    )
    off = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, evidence, None, "transitions")
    on = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, guarded, None, "transitions")
    assert RISK not in off.weights.weights and off.risk == {}
    # Unguarded, the learnt list carries more risk than the content order; guarded, it does not,
    # on the validation slice that chose the penalty and over every source.
    risk = on.risk
    assert risk["risk_before"] > risk["bar_risk"] >= risk["risk_after"] and risk["penalty"] > 0
    assert on.weights.weights[RISK] == pytest.approx(risk["weight"]) and risk["weight"] > 0
    content = dataclasses.replace(
        on, weights=bar_weightings(["click", "dislike"], ("content", "popularity"))["content"]
    )
    assert (
        _mean_top_risk(pairs, vectors, priors, on, guarded)
        <= _mean_top_risk(pairs, vectors, priors, content, guarded)
        < _mean_top_risk(pairs, vectors, priors, off, guarded)
    )
    # The penalty is the smallest that does it: the grid's previous step does not.
    smaller = max(p for p in guarded.risk_penalties if p < risk["penalty"])
    fewer = dataclasses.replace(guarded, risk_penalties=(smaller,))
    short = fit_fusion(pairs, vectors, priors, heldout, OBJECTIVES, fewer, None, "transitions")
    assert short.risk["penalty"] == smaller and short.risk["risk_after"] > risk["risk_after"]
    # It round-trips, and a list no riskier than the bar is left alone.
    assert type(on).from_dict(on.to_dict()).risk == on.risk
    calm = priors.assign(positives_dislike=0)
    quiet = fit_fusion(pairs, vectors, calm, heldout, OBJECTIVES, guarded, None, "transitions")
    assert quiet.risk.get("penalty", 0.0) == 0.0 and RISK not in quiet.weights.weights


def test_the_risk_is_the_candidates_smoothed_rate_of_the_subtracting_objectives():
    priors = pd.DataFrame(
        {"events": [100, 10], "positives_click": [50, 1], "positives_dislike": [10, 0]},
        index=pd.Index(["a", "b"], name="video_id"),
    )
    pairs = pd.DataFrame({"candidate_video_id": ["a", "b", "z"]})
    risk = risk_column(pairs, priors, OBJECTIVES, strength=10.0)
    np.testing.assert_allclose(risk, fallback_rate(pairs, priors, "dislike", 10.0))
    assert risk[0] > risk[2] > risk[1]  # often disliked, the catalog's rate, never disliked
    np.testing.assert_allclose(risk_column(pairs, priors, OBJECTIVES[:1], 10.0), 0.0)


def test_fills_outrank_gated_pairs_only_where_that_lifts_the_validation_lists():
    pairs, vectors, priors, heldout = _world()
    cosine = vectors["click"][0].pair_cosine(pairs["source_video_id"], pairs["candidate_video_id"])
    decide = dataclasses.replace(SETTINGS, gated_first=None)
    # The pairs below the gate are the ones users go on to (the most similar by ALS): ranked by
    # score they lift the lists, so they may compete.
    useful = pairs.assign(gated=cosine < np.quantile(cosine, 0.8))
    fusion = fit_fusion(useful, vectors, priors, heldout, OBJECTIVES, decide, None, "transitions")
    assert fusion.fills["kept"] and fusion.fills["gain"] > 0 and fusion.gated_first is False
    # Below the gate lie the least similar: by score they change nothing, the gate holds.
    useless = pairs.assign(gated=cosine > np.quantile(cosine, 0.2))
    fusion = fit_fusion(useless, vectors, priors, heldout, OBJECTIVES, decide, None, "transitions")
    assert not fusion.fills["kept"] and fusion.gated_first is True
    assert type(fusion).from_dict(fusion.to_dict()).gated_first is True
    # A fixed setting is kept as it is, without a decision.
    fixed = fit_fusion(useful, vectors, priors, heldout, OBJECTIVES, SETTINGS, None, "transitions")
    assert fixed.fills == {} and fixed.gated_first is False
