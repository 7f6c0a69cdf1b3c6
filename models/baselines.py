"""The comparison methods of the offline evaluation: popularity, content-only, item-based CF and
nearest neighbours of any item vectors (ALS or two-tower), each as a related lists table.

Every function returns video_id, rank (1..n), related_video_id, content_similarity, score.
content_similarity is NaN where the method does not start from candidate pairs; fill it with
`attach_content_similarity` (metrics.relevance counts NaN as 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from models.candidates import GATED
from models.cooccurrence import pair_jaccard
from models.vectors import ItemVectors, top_k_neighbours

LIST_COLUMNS = ["video_id", "rank", "related_video_id", "content_similarity", "score"]


def _rank(pairs: pd.DataFrame, n: int) -> pd.DataFrame:
    """Top n per video_id by score desc (ties by related_video_id), with rank 1..n."""
    ordered = pairs.sort_values(
        ["video_id", "score", "related_video_id"], ascending=[True, False, True], kind="stable"
    )
    ordered = ordered.assign(rank=ordered.groupby("video_id").cumcount() + 1)
    top = ordered[ordered["rank"] <= n]
    if "content_similarity" not in top:
        top = top.assign(content_similarity=np.nan)
    return top[LIST_COLUMNS].reset_index(drop=True)


def attach_content_similarity(lists: pd.DataFrame, candidate_pairs: pd.DataFrame) -> pd.DataFrame:
    """Fill missing content_similarity from candidate pairs (source_video_id, candidate_video_id,
    content_similarity); pairs that are not candidates stay NaN."""
    known = candidate_pairs.rename(
        columns={
            "source_video_id": "video_id",
            "candidate_video_id": "related_video_id",
            "content_similarity": "_similarity",
        }
    )[["video_id", "related_video_id", "_similarity"]]
    merged = lists.merge(known, on=["video_id", "related_video_id"], how="left")
    if "content_similarity" in merged:
        merged["content_similarity"] = merged["content_similarity"].fillna(merged["_similarity"])
    else:
        merged["content_similarity"] = merged["_similarity"]
    return merged.drop(columns="_similarity")


def popularity_lists(train_events: pd.DataFrame, video_ids: np.ndarray, n: int) -> pd.DataFrame:
    """The n most clicked videos overall (ties by id) for every source, the source excluded.

    score = number of training clicks."""
    clicks = train_events.loc[train_events["clicked"] == 1, "video_id"].value_counts()
    popular = (
        pd.DataFrame({"related_video_id": clicks.index, "score": clicks.to_numpy(dtype=float)})
        .sort_values(["score", "related_video_id"], ascending=[False, True], kind="stable")
        .head(n + 1)  # one spare, for the source itself
    )
    sources = pd.DataFrame({"video_id": pd.unique(np.asarray(video_ids))})
    pairs = sources.merge(popular, how="cross")
    pairs = pairs[pairs["video_id"] != pairs["related_video_id"]]
    return _rank(pairs, n)


def content_lists(candidate_pairs: pd.DataFrame, n: int) -> pd.DataFrame:
    """Top n candidates per source by content_similarity (ties by candidate id)."""
    pairs = candidate_pairs.rename(
        columns={"source_video_id": "video_id", "candidate_video_id": "related_video_id"}
    )[["video_id", "related_video_id", "content_similarity"]]
    return _rank(pairs.assign(score=pairs["content_similarity"].astype(float)), n)


def item_cf_lists(
    train_events: pd.DataFrame, n: int, min_cooccurrence: int, block_size: int = 2048
) -> pd.DataFrame:
    """Item-based CF: cosine of the binary users x videos click matrix, top n per video.

    cosine(i, j) = users who clicked both / sqrt(users of i * users of j); only pairs with
    co-occurrence >= min_cooccurrence, never a video with itself. X.T @ X is computed sparse,
    block_size source videos at a time, and cut to the top n per block."""
    clicked = train_events.loc[train_events["clicked"] == 1, ["user_id", "video_id"]]
    clicked = clicked.drop_duplicates()
    users, user_rows = np.unique(clicked["user_id"].to_numpy(), return_inverse=True)
    videos, video_cols = np.unique(clicked["video_id"].to_numpy(), return_inverse=True)
    matrix = sparse.csr_matrix(
        (np.ones(len(clicked)), (user_rows, video_cols)), shape=(len(users), len(videos))
    )
    by_video = matrix.T.tocsr()
    degree = np.asarray(matrix.sum(axis=0)).ravel()
    blocks = []
    for start in range(0, len(videos), block_size):
        co = (by_video[start : start + block_size] @ matrix).tocoo()
        source = co.row + start
        keep = (source != co.col) & (co.data >= min_cooccurrence)
        source, target, count = source[keep], co.col[keep], co.data[keep]
        cosine = count / np.sqrt(degree[source] * degree[target])
        pairs = pd.DataFrame(
            {"video_id": videos[source], "related_video_id": videos[target], "score": cosine}
        )
        blocks.append(_rank(pairs, n))
    if not blocks:
        return pd.DataFrame(columns=LIST_COLUMNS)
    return pd.concat(blocks, ignore_index=True)


def vector_lists(
    vectors: ItemVectors, n: int, candidate_pairs: pd.DataFrame | None = None, sign: int = 1
) -> pd.DataFrame:
    """Top n per video by sign * cosine of item vectors (ALS, two-tower); score = sign * cosine.

    Without candidate_pairs: nearest neighbours among all videos (no relevance gate). With them:
    only the candidates are ranked (pairs where either side has no vector are dropped), and
    their content_similarity is carried over. sign -1 ranks a dislike model as the paper does:
    the least similar first ("zero minus the score")."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, not {sign}")
    if candidate_pairs is None:
        neighbours = top_k_neighbours(vectors, vectors.video_ids, n, sign)
        k = neighbours.shape[1]
        sources = np.repeat(vectors.video_ids, k)
        targets = vectors.video_ids[neighbours.ravel()]
        pairs = pd.DataFrame({"video_id": sources, "related_video_id": targets})
    else:
        pairs = candidate_pairs.rename(
            columns={"source_video_id": "video_id", "candidate_video_id": "related_video_id"}
        )
        keep = ["video_id", "related_video_id"] + (
            ["content_similarity"] if "content_similarity" in pairs else []
        )
        pairs = pairs[keep]
    cosine = vectors.pair_cosine(pairs["video_id"].to_numpy(), pairs["related_video_id"].to_numpy())
    pairs = pairs.assign(score=sign * cosine)
    return _rank(pairs[pairs["score"].notna()], n)


def ungated_pairs(
    models: list[ItemVectors], k: int, sources: np.ndarray | None = None
) -> pd.DataFrame:
    """The candidates of a method without the relevance gate: the union over `models` of each
    source video's k nearest neighbours by that model's cosine, as (source_video_id,
    candidate_video_id), distinct, sorted. Sources: every video of a model, or those of
    `sources` it has a vector for."""
    wanted = None if sources is None else np.asarray(sources).astype(str)
    parts = []
    for vectors in models:
        if len(vectors) < 2:
            continue
        query = (
            vectors.video_ids
            if wanted is None
            else vectors.video_ids[np.isin(vectors.video_ids, wanted)]
        )
        neighbours = top_k_neighbours(vectors, query, k)
        parts.append(
            pd.DataFrame(
                {
                    "source_video_id": np.repeat(query, neighbours.shape[1]),
                    "candidate_video_id": vectors.video_ids[neighbours.ravel()],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["source_video_id", "candidate_video_id"])
    pairs = pd.concat(parts, ignore_index=True).drop_duplicates()
    return pairs.sort_values(["source_video_id", "candidate_video_id"]).reset_index(drop=True)


# Gated bars: the same candidate pairs as the method (stage 1), each ordered by one simple signal,
# so that a gain of the method over them is a gain of stage 2 and 3, not of the relevance gate.

GATED_PAIR_COLUMNS = ["source_video_id", "candidate_video_id", "content_similarity"]


def _training_clicks(train_events: pd.DataFrame) -> pd.Series:
    """Click events (clicked == 1) per video_id in training, as float."""
    clicked = train_events.loc[train_events["clicked"] == 1, "video_id"]
    return clicked.value_counts().astype(float)


def _gated_pairs(candidate_pairs: pd.DataFrame, train_events: pd.DataFrame) -> pd.DataFrame:
    """Candidate pairs as video_id, related_video_id, content_similarity (float64), gated (False
    on a pair that only fills a short list; True without the column) and clicks, the
    candidate's training clicks (0 where it has none)."""
    pairs = candidate_pairs[GATED_PAIR_COLUMNS].rename(
        columns={"source_video_id": "video_id", "candidate_video_id": "related_video_id"}
    )
    clicks = pairs["related_video_id"].map(_training_clicks(train_events)).fillna(0.0)
    return pairs.assign(
        content_similarity=pairs["content_similarity"].astype(np.float64),
        clicks=clicks.to_numpy(dtype=np.float64),
        gated=candidate_pairs[GATED].to_numpy(dtype=bool) if GATED in candidate_pairs else True,
    )


def _rank_by(pairs: pd.DataFrame, n: int, keys: list[str]) -> pd.DataFrame:
    """Top n per video_id ordered by `keys`, each descending, then related_video_id ascending
    (so that the id decides only when every key ties), with rank 1..n. A source's gated pairs
    come before those that only fill its list, as in the method's lists."""
    keys = [GATED, *keys]
    ordered = pairs.sort_values(
        ["video_id", *keys, "related_video_id"],
        ascending=[True, *([False] * len(keys)), True],
        kind="mergesort",
    )
    ordered = ordered.assign(rank=ordered.groupby("video_id", sort=False).cumcount() + 1)
    return ordered[ordered["rank"] <= n][LIST_COLUMNS].reset_index(drop=True)


def gated_popularity_lists(
    candidate_pairs: pd.DataFrame, train_events: pd.DataFrame, n: int
) -> pd.DataFrame:
    """Each source's candidates by the candidate's training clicks (ties: content_similarity
    desc, then id); score = clicks."""
    pairs = _gated_pairs(candidate_pairs, train_events)
    return _rank_by(pairs.assign(score=pairs["clicks"]), n, ["score", "content_similarity"])


def content_popularity_lists(
    candidate_pairs: pd.DataFrame, train_events: pd.DataFrame, n: int
) -> pd.DataFrame:
    """Each source's candidates by content_similarity, ties broken by the candidate's training
    clicks, then id.

    score = content_similarity + 1e-6 * clicks / (1 + max clicks), max over the candidates: the
    popularity term is below 1e-6, so it only orders candidates whose similarities tie (closer
    than 1e-6), and the ranking can be read from the score alone. The lists are ranked by that
    score (then clicks and id, for ties the float cannot resolve)."""
    pairs = _gated_pairs(candidate_pairs, train_events)
    most = pairs["clicks"].max() if len(pairs) else 0.0
    score = pairs["content_similarity"] + 1e-6 * pairs["clicks"] / (1.0 + most)
    return _rank_by(pairs.assign(score=score), n, ["score", "clicks"])


def gated_cooccurrence_lists(
    candidate_pairs: pd.DataFrame,
    train_events: pd.DataFrame,
    n: int,
    block_size: int = 2048,
) -> pd.DataFrame:
    """Each source's candidates by SAR-style Jaccard co-occurrence with the source in training.

    c(i, j) = distinct users who clicked both; score = c / (users(i) + users(j) - c), 0 where no
    user clicked both (models.cooccurrence.pair_jaccard). Ties (and so every candidate with
    score 0) go by training clicks, then content_similarity, then id."""
    pairs = _gated_pairs(candidate_pairs, train_events)
    jaccard = pair_jaccard(
        pairs["video_id"].to_numpy(), pairs["related_video_id"].to_numpy(), train_events, block_size
    )
    return _rank_by(pairs.assign(score=jaccard), n, ["score", "clicks", "content_similarity"])
