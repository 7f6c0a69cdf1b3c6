"""Per-objective implicit-feedback ALS: one interface (`fit_als`) over two engines.

The engines (implicit, Spark) factorize the same user x video matrix into cosine-ready vectors.

Parameters use the paper's Spark names (rank, max_iter, reg_param, alpha) and are passed unchanged
to both engines, but `reg_param` does not mean the same thing in both:
- Spark (ALS-WR) adds `reg_param * n_u` to user u's normal equations, n_u = that user's number of
  rated videos (and likewise `reg_param * n_i` for video i);
- implicit adds `reg_param` alone, whatever the row's count.
So with the paper's small values Spark regularizes busy users and popular videos far more than
implicit does. Matching them would need a per-row scaling implicit does not offer (scaling by the
mean count brought the engines no closer on planted data); we keep the paper's values (which are
Spark's) for both, and compare the engines by how much their nearest
neighbours overlap, never by factor equality (the factors differ by rotation anyway).
Confidence is 1 + alpha * value in both engines; the matrix itself is never scaled by alpha.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.metrics import sampled_auc
from models.params import AlsParams
from models.vectors import ItemVectors, top_k_neighbours

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

ENGINES = ("implicit", "spark")

# progress(iteration, seconds, loss): implicit calls it after each iteration, Spark (no
# per-iteration hook) once at the end; loss is None (the training loss is computed once, after
# the fit, into AlsModel.training_loss).
Progress = Callable[[int, float, float | None], None]


@dataclass(frozen=True)
class AlsModel:
    """A fitted ALS model: unit item vectors for cosine, raw factors for user-video scores."""

    item_vectors: ItemVectors  # cosine-ready, one row per video with any interaction
    item_factors: np.ndarray  # float32 (n_videos, rank), raw, rows in item_vectors' order
    user_ids: np.ndarray  # sorted
    user_factors: np.ndarray  # float32 (n_users, rank), raw, rows in user_ids' order
    engine: str
    params: AlsParams
    training_loss: float | None = None  # implicit's final loss, when computed
    fit_seconds: float = 0.0
    # The fit's users x videos input (rows in user_ids', columns in video_ids' order): the pairs
    # auc_on_holdout must not draw as negatives, without looking the ids up again.
    train_matrix: sp.csr_matrix | None = field(default=None, compare=False, repr=False)

    @property
    def video_ids(self) -> np.ndarray:
        return self.item_vectors.video_ids


def sorted_codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's position among the sorted distinct values, and those values: a training
    set's ids encoded once for every matrix cut from it (`coded_interaction_matrix`)."""
    codes, distinct = pd.factorize(values, sort=True)
    return codes, np.asarray(distinct)


@dataclass(frozen=True)
class CodedMatrix:
    """A users x videos CSR (float32) cut from coded rows, with the ids of its rows and columns
    and where each code of the whole set landed (-1: no interaction here)."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray  # sorted, one per row
    video_ids: np.ndarray  # sorted, one per column
    user_rows: np.ndarray  # per user code of the set: its row, or -1
    video_columns: np.ndarray  # per video code of the set: its column, or -1


def coded_interaction_matrix(
    user_codes: np.ndarray,
    video_codes: np.ndarray,
    values: np.ndarray,
    user_ids: np.ndarray,
    video_ids: np.ndarray,
    value_name: str = "value",
) -> CodedMatrix:
    """The users x videos matrix of coded interactions (`sorted_codes` of a larger set): rows with
    value 0 dropped, repeated (user, video) values summed, only the users and videos left kept,
    in their sorted order. The same matrix `interaction_matrix` builds from the ids.
    `value_name`: the values' column, for the error message."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"interactions: column {value_name!r} has NaN or infinite values")
    kept = values != 0
    if not kept.any():
        raise ValueError("interactions are empty (no non-zero values): nothing to factorize")
    user_codes, video_codes = np.asarray(user_codes)[kept], np.asarray(video_codes)[kept]
    if (user_codes < 0).any() or (video_codes < 0).any():  # pd.factorize's code of a missing id
        raise ValueError("interactions: a user_id or video_id is missing")
    rows, user_rows = _compact(user_codes, len(user_ids))
    columns, video_columns = _compact(video_codes, len(video_ids))
    matrix = sp.csr_matrix(
        (values[kept].astype(np.float32), (rows, columns)),
        shape=(int(rows.max()) + 1, int(columns.max()) + 1),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()  # values that cancelled out when summed
    return CodedMatrix(
        matrix,
        np.asarray(user_ids)[user_rows >= 0],
        np.asarray(video_ids)[video_columns >= 0],
        user_rows,
        video_columns,
    )


def _compact(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes renumbered 0.. over the ones present, in order; and the map old -> new (-1)."""
    present = np.bincount(codes, minlength=n) > 0
    new = np.where(present, np.cumsum(present) - 1, -1)
    return new[codes], new


def interaction_matrix(
    interactions: pd.DataFrame,
    users: str = "user_id",
    items: str = "video_id",
    value: str = "value",
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Users x videos CSR (float32) with repeated (user, video) values summed, and the sorted ids.

    Rows with value 0 are dropped first, so every video in the matrix has an interaction.
    """
    missing = {users, items, value} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions lack column(s) {sorted(missing)}")
    user_codes, user_ids = sorted_codes(interactions[users])
    video_codes, video_ids = sorted_codes(interactions[items].astype(str))
    values = interactions[value].to_numpy(dtype=np.float64)
    coded = coded_interaction_matrix(user_codes, video_codes, values, user_ids, video_ids, value)
    return coded.matrix, coded.user_ids, coded.video_ids


def fit_als(
    interactions: pd.DataFrame,
    params: AlsParams,
    engine: str = "implicit",
    *,
    seed: int,
    spark: SparkSession | None = None,
    progress: Progress | None = None,
    calculate_training_loss: bool = False,
) -> AlsModel:
    """Fit ALS on interactions [user_id, video_id, value] with one engine ("implicit", "spark").

    `spark` is an active SparkSession for the Spark engine (one is found or made when None).
    """
    return fit_als_matrix(
        *interaction_matrix(interactions),
        params,
        engine,
        seed=seed,
        spark=spark,
        progress=progress,
        calculate_training_loss=calculate_training_loss,
    )


def fit_als_matrix(
    matrix: sp.csr_matrix,
    user_ids: np.ndarray,
    video_ids: np.ndarray,
    params: AlsParams,
    engine: str = "implicit",
    *,
    seed: int,
    spark: SparkSession | None = None,
    progress: Progress | None = None,
    calculate_training_loss: bool = False,
) -> AlsModel:
    """`fit_als` on a users x videos matrix already built (`interaction_matrix`,
    `coded_interaction_matrix`): rows in `user_ids`', columns in `video_ids`' order."""
    if engine not in ENGINES:
        raise ValueError(f"unknown ALS engine {engine!r}: use one of {', '.join(ENGINES)}")
    started = time.perf_counter()
    if engine == "implicit":
        user_factors, item_factors, loss = _fit_implicit(
            matrix, params, seed, progress, calculate_training_loss
        )
    else:
        user_factors, item_factors = _fit_spark(matrix, params, seed, spark)
        loss = None
    seconds = time.perf_counter() - started
    if engine == "spark" and progress is not None:
        progress(params.max_iter - 1, seconds, None)
    log.info(
        "ALS (%s) on %d users x %d videos, %d interactions: %.2f s",
        engine,
        *matrix.shape,
        matrix.nnz,
        seconds,
    )
    return AlsModel(
        item_vectors=ItemVectors.from_raw(video_ids, item_factors),
        item_factors=item_factors,
        user_ids=user_ids,
        user_factors=user_factors,
        engine=engine,
        params=params,
        training_loss=loss,
        fit_seconds=seconds,
        train_matrix=matrix,
    )


def _fit_implicit(
    matrix: sp.csr_matrix,
    params: AlsParams,
    seed: int,
    progress: Progress | None,
    calculate_training_loss: bool,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    from implicit.cpu.als import AlternatingLeastSquares, calculate_loss

    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        log.warning("OPENBLAS_NUM_THREADS is not 1: implicit's ALS runs several times slower")
    model = AlternatingLeastSquares(
        factors=params.rank,
        iterations=params.max_iter,
        regularization=params.reg_param,
        alpha=params.alpha,
        # implicit would compute the loss after every iteration, a pass over the matrix each
        # (10% of the fit at 1M events); the final loss is computed once below instead.
        calculate_training_loss=False,
        random_state=seed,
    )
    model.fit(matrix, show_progress=False, callback=progress)
    if model.item_factors.shape != (matrix.shape[1], params.rank):
        raise RuntimeError(
            f"implicit returned item factors {model.item_factors.shape} for "
            f"{matrix.shape[1]} videos: users x items input expected (implicit >= 0.5)"
        )
    user_factors = np.asarray(model.user_factors, dtype=np.float32)
    item_factors = np.asarray(model.item_factors, dtype=np.float32)
    loss = None
    if calculate_training_loss:
        confidence = (params.alpha * matrix).astype(np.float32).tocsr()  # as implicit's fit
        loss = float(calculate_loss(confidence, user_factors, item_factors, params.reg_param))
    return user_factors, item_factors, loss


def _fit_spark(
    matrix: sp.csr_matrix, params: AlsParams, seed: int, spark: SparkSession | None
) -> tuple[np.ndarray, np.ndarray]:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    if spark is None:
        spark = SparkSession.getActiveSession()
    if spark is None:
        spark = SparkSession.builder.master("local[2]").getOrCreate()
    context = _spark_context(spark)
    blocks = 10 if context is None else min(10, max(1, context.defaultParallelism))
    if context is not None and context.getCheckpointDir() is None and params.max_iter > 10:
        # ALS checkpoints its factors every 10 iterations only when a directory is set; without
        # one the lineage grows with each iteration and task serialization can overflow the stack.
        log.warning("Spark has no checkpoint directory: ALS over 10 iterations may fail")
    cells = matrix.tocoo()
    ratings = pd.DataFrame(
        {
            "user": cells.row.astype(np.int32),
            "item": cells.col.astype(np.int32),
            "rating": cells.data.astype(np.float32),
        }
    )
    als = ALS(
        rank=params.rank,
        maxIter=params.max_iter,
        regParam=params.reg_param,
        alpha=params.alpha,
        implicitPrefs=True,
        nonnegative=False,
        seed=seed,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        coldStartStrategy="drop",
        # Spark's default of 10 blocks each way suits clusters; locally one per core is 5x faster
        # (measured 19 s vs 4 s on 3,600 interactions, local[2]).
        numUserBlocks=blocks,
        numItemBlocks=blocks,
    )
    fitted = als.fit(spark.createDataFrame(ratings))
    users = _spark_factors(fitted.userFactors, matrix.shape[0], params.rank)
    items = _spark_factors(fitted.itemFactors, matrix.shape[1], params.rank)
    return users, items


def _spark_context(spark):
    """The session's SparkContext; None under Spark Connect, which has none."""
    try:
        return spark.sparkContext
    except Exception:
        return None


def _spark_factors(factors, n_rows: int, rank: int) -> np.ndarray:
    """A Spark factor DataFrame (id, features) as a dense array in id order."""
    frame = factors.toPandas()
    out = np.zeros((n_rows, rank), dtype=np.float32)
    if len(frame):
        out[frame["id"].to_numpy()] = np.stack(frame["features"].to_numpy()).astype(np.float32)
    if len(frame) != n_rows:
        log.warning("Spark ALS returned factors for %d of %d rows", len(frame), n_rows)
    return out


def item_item_similarity(
    vectors: ItemVectors, sources: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """S^k(i, j): cosine of the item factors per pair; NaN where ALS has no vector for a side."""
    return vectors.pair_cosine(sources, candidates)


def pair_similarity(model: AlsModel, pairs: pd.DataFrame) -> pd.Series:
    """item_item_similarity on (source_video_id, candidate_video_id) pairs, aligned with `pairs`."""
    scores = item_item_similarity(
        model.item_vectors,
        pairs["source_video_id"].to_numpy(),
        pairs["candidate_video_id"].to_numpy(),
    )
    return pd.Series(scores, index=pairs.index, name=f"als_{model.engine}")


def neighbour_overlap(a: ItemVectors, b: ItemVectors, k: int, video_ids: np.ndarray) -> float:
    """Mean share of top-k neighbours two models have in common, over the given videos.

    Both are restricted to the videos they share, so each ranks the same candidates.
    """
    common = np.intersect1d(a.video_ids, b.video_ids)
    if len(common) < 2:
        raise ValueError("neighbour_overlap: the two models share fewer than two videos")
    queries = np.intersect1d(np.asarray(video_ids).astype(str), common)
    if len(queries) == 0:
        raise ValueError("neighbour_overlap: none of the given videos has a vector in both")
    a_common = ItemVectors(common, a.vectors[a.positions(common)])
    b_common = ItemVectors(common, b.vectors[b.positions(common)])
    top_a = top_k_neighbours(a_common, queries, k)
    top_b = top_k_neighbours(b_common, queries, k)
    shared = [
        len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(top_a, top_b, strict=True)
    ]
    return float(np.mean(shared) / top_a.shape[1])


def chance_overlap(n_items: int, k: int) -> float:
    """neighbour_overlap expected of two unrelated rankings of n_items videos: k / (n - 1)."""
    return min(k, n_items - 1) / (n_items - 1)


def auc_on_holdout(
    model: AlsModel, train: pd.DataFrame, holdout: pd.DataFrame, rng: np.random.Generator
) -> float:
    """Pooled holdout AUC (`sampled_auc`) of the held-out (user, video) positives against one
    random video per positive that its user never saw.

    Score = user factor . item factor (raw). Negatives are drawn from the model's videos, outside
    the user's train and held-out interactions; ties count half. Pairs whose user or video the
    model does not know are skipped.
    """
    user_index = pd.Index(model.user_ids)
    video_index = pd.Index(model.video_ids)
    users = user_index.get_indexer(holdout["user_id"])
    videos = video_index.get_indexer(holdout["video_id"].astype(str))
    seen_train = None
    if model.train_matrix is None:
        train_users = user_index.get_indexer(train["user_id"])
        train_videos = video_index.get_indexer(train["video_id"].astype(str))
        kept = (train_users >= 0) & (train_videos >= 0)
        seen_train = train_users[kept].astype(np.int64) * len(video_index) + train_videos[kept]
    return auc_at_positions(model, users, videos, rng, seen_train)


def auc_at_positions(
    model: AlsModel,
    users: np.ndarray,
    videos: np.ndarray,
    rng: np.random.Generator,
    seen_train: np.ndarray | None = None,
) -> float:
    """`auc_on_holdout` with the held-out pairs given as the model's user rows and video
    columns (-1: unknown to the model). The train pairs are the fit's matrix, or `seen_train`
    (user row * videos + video column) for a model without it."""
    known = (users >= 0) & (videos >= 0)
    if not known.any():
        raise ValueError("auc_on_holdout: no held-out pair has a user and a video the model knows")
    users, videos = users[known], videos[known]

    n_videos = len(model.video_ids)
    if seen_train is None and model.train_matrix is None:
        raise ValueError("auc_at_positions: a model without its train matrix needs seen_train")
    if seen_train is None:  # the train pairs as codes, no id lookups
        matrix = model.train_matrix
        rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
        seen_train = rows * n_videos + matrix.indices
    # Sorted, not unique: membership by binary search needs no dedup (np.unique: 8x the time).
    seen = np.sort(np.concatenate([seen_train, users.astype(np.int64) * n_videos + videos]))

    negatives = rng.integers(0, n_videos, size=len(users))
    codes = users.astype(np.int64) * n_videos
    # Redraw the negatives that hit a seen video; only the redrawn ones are looked up again.
    clash = np.flatnonzero(_in_sorted(seen, codes + negatives))
    for _ in range(20):
        if not len(clash):
            break
        negatives[clash] = rng.integers(0, n_videos, size=len(clash))
        clash = clash[_in_sorted(seen, codes[clash] + negatives[clash])]
    valid = np.ones(len(users), dtype=bool)
    valid[clash] = False

    # np.take: several times faster than fancy indexing for whole rows
    user_f = np.take(model.user_factors, users[valid], axis=0).astype(np.float64)
    pos = np.einsum("ij,ij->i", user_f, np.take(model.item_factors, videos[valid], axis=0))
    neg = np.einsum("ij,ij->i", user_f, np.take(model.item_factors, negatives[valid], axis=0))
    return sampled_auc(pos, neg)


def _in_sorted(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values in sorted_values (sorted; repeats allowed) by binary search: np.isin would sort or
    hash the seen pairs again on every call of the redraw loop."""
    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[at] == values
