"""The candidates step on the toy world: the pairs written are exactly stage 1 on the published
profiles, honour e and M, carry the values each pair shares, reach cold videos, and are logged."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from models.candidates import candidate_pairs
from models.profile import encode_profiles, fit_vocabulary
from pipelines.stage1 import popularity
from pipelines.workspace import read_candidate_pairs


def test_the_written_pairs_are_stage_1_on_the_contract_videos(toy_pipeline):
    config, videos = toy_pipeline.config, toy_pipeline.world.videos
    settings = config.candidates
    written = read_candidate_pairs(config)
    written = written[written["gated"]]  # the pairs filling short lists: the next test
    vocabulary = fit_vocabulary(videos, config.dataset.video_attributes, settings.top_k_values)
    ordered = videos.sort_values("video_id").reset_index(drop=True)
    ids = ordered["video_id"].to_numpy()
    expected = candidate_pairs(
        ids,
        encode_profiles(ordered, vocabulary),
        settings.threshold,
        settings.max_per_source,
        settings.block_size,
        # Ties of similarity at the cap go to the more clicked candidates.
        tie_break=popularity(toy_pipeline.world.events, ids.astype(str)),
    )
    pd.testing.assert_frame_equal(
        written[["source_video_id", "candidate_video_id", "content_similarity"]].reset_index(
            drop=True
        ),
        expected[["source_video_id", "candidate_video_id", "content_similarity"]].reset_index(
            drop=True
        ),
    )


def test_threshold_cap_and_no_self_pairs(toy_pipeline):
    settings = toy_pipeline.config.candidates
    pairs = read_candidate_pairs(toy_pipeline.config)
    assert len(pairs) > 0
    gated = pairs[pairs["gated"]]
    assert (gated["content_similarity"] >= settings.threshold).all()
    # Below the gate only to fill a source with fewer than min_per_source gated candidates.
    filled = pairs[~pairs["gated"]]
    assert (filled["content_similarity"] >= settings.fill_threshold).all()
    assert (filled["content_similarity"] < settings.threshold).all()
    short = gated.groupby("source_video_id").size().reindex(filled["source_video_id"].unique())
    assert (short.fillna(0) < settings.min_per_source).all()
    assert (pairs["content_similarity"] <= 1 + 1e-9).all()
    assert (pairs["source_video_id"] != pairs["candidate_video_id"]).all()
    assert pairs.groupby("source_video_id").size().max() <= settings.max_per_source
    assert not pairs.duplicated(["source_video_id", "candidate_video_id"]).any()


def test_each_pair_names_the_values_both_videos_carry(toy_pipeline):
    pairs = read_candidate_pairs(toy_pipeline.config).head(200)
    videos = toy_pipeline.world.videos.set_index("video_id")
    attributes = toy_pipeline.config.dataset.video_attributes

    def tokens(video_id: str) -> set[str]:
        row = videos.loc[video_id]
        out = set()
        for name, kind in attributes.items():
            values = row[name] if kind == "multi" else [row[name]]
            out |= {f"{name}={value}" for value in values}
        return out

    for pair in pairs.itertuples():
        shared = set(pair.shared)
        assert shared, "a pair above e shares at least one value"
        assert shared <= tokens(pair.source_video_id) & tokens(pair.candidate_video_id)


def test_cold_videos_without_events_still_have_candidates(toy_pipeline):
    truth = toy_pipeline.world.truth["videos"]
    events = toy_pipeline.world.events
    silent = set(truth.loc[truth["is_cold"], "video_id"]) - set(events["video_id"])
    pairs = read_candidate_pairs(toy_pipeline.config)
    if silent:
        assert silent & set(pairs["source_video_id"]), "no cold video got candidates"


def test_pairs_follow_the_planted_relations(toy_pipeline):
    truth = toy_pipeline.world.truth["videos"].set_index("video_id")
    pairs = read_candidate_pairs(toy_pipeline.config)
    source, candidate = truth.loc[pairs["source_video_id"]], truth.loc[pairs["candidate_video_id"]]
    same_genre = source["genre"].to_numpy() == candidate["genre"].to_numpy()
    assert same_genre.mean() > 0.95
    # Two blockbusters of different genres are the confound the gate exists to stop.
    blockbusters = source["is_blockbuster"].to_numpy() & candidate["is_blockbuster"].to_numpy()
    assert not (blockbusters & ~same_genre).any()


def test_the_step_logs_counts_and_distribution(toy_pipeline):
    runs = mlflow.search_runs(filter_string="tags.step = 'candidates'", output_format="list")
    assert runs
    metrics = runs[0].data.metrics
    pairs = read_candidate_pairs(toy_pipeline.config)
    assert metrics["pairs"] == len(pairs)
    assert 0 < metrics["coverage"] <= 1
    assert 0 <= metrics["few_candidates_share"] <= 1  # sources with fewer than N candidates
    assert runs[0].data.params["few_candidates"] == str(toy_pipeline.config.merge.top_n)
    # How often the cap of M fell inside a tie of similarity (broken by popularity, not the id).
    assert 0 <= metrics["cut_in_tie_share"] <= metrics["capped_share"] <= 1
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "candidates")
    }
    assert {"candidates/summary.json", "candidates/pairs_per_source.png"} <= artifacts
    assert np.isfinite(list(metrics.values())).all()
