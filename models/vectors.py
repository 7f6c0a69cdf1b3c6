"""Item vectors: what every stage 2 model (ALS engines, two-tower) hands to the merge.

One small class: video ids with unit-length vectors, cosine on given pairs, nearest neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa


@dataclass(frozen=True)
class ItemVectors:
    """Unit-length float32 vectors, one row per video id (ids unique, in a fixed order)."""

    video_ids: np.ndarray  # str, shape (n,)
    vectors: np.ndarray  # float32, shape (n, d), each row of norm 1 (or 0 for a zero vector)

    @classmethod
    def from_raw(cls, video_ids: np.ndarray, vectors: np.ndarray) -> ItemVectors:
        """L2-normalize the rows; a zero row stays zero (its cosine with anything is 0)."""
        ids = np.asarray(video_ids).astype(str)
        ascending = len(ids) < 2 or bool((ids[1:] > ids[:-1]).all())  # unique without a sort
        if not ascending and len(ids) != len(np.unique(ids)):
            raise ValueError("ItemVectors: video ids must be unique")
        raw = np.asarray(vectors, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[0] != len(ids):
            raise ValueError(f"ItemVectors: {raw.shape} vectors for {len(ids)} ids")
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        unit = np.divide(raw, norms, out=np.zeros_like(raw), where=norms > 0)
        return cls(ids, unit.astype(np.float32))

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def positions(self, video_ids: np.ndarray) -> np.ndarray:
        """Row of each id, -1 where the id has no vector."""
        index = pd.Index(self.video_ids)
        return index.get_indexer(np.asarray(video_ids).astype(str))

    def pair_cosine(self, sources: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Cosine of each (source, candidate) pair, float64; NaN where either id has no vector."""
        left, right = self.positions(sources), self.positions(candidates)
        known = (left >= 0) & (right >= 0)
        out = np.full(len(left), np.nan)
        a = self.vectors[left[known]].astype(np.float64)
        b = self.vectors[right[known]].astype(np.float64)
        out[known] = np.einsum("ij,ij->i", a, b)
        return out

    def neighbours(self, video_id: str, k: int) -> pd.DataFrame:
        """The k most similar other videos by cosine (ties by position): video_id, cosine."""
        row = self.positions(np.array([video_id]))[0]
        if row < 0:
            raise KeyError(f"no vector for video {video_id!r}")
        top = top_k_neighbours(self, np.array([video_id]), k)[0]
        cosine = self.vectors[top] @ self.vectors[row]
        return pd.DataFrame({"video_id": self.video_ids[top], "cosine": cosine.astype(float)})

    def to_frame(self) -> pd.DataFrame:
        """video_id plus one list-valued `vector` column, for Parquet."""
        return pd.DataFrame({"video_id": self.video_ids, "vector": list(self.vectors)})

    def to_table(self) -> pa.Table:
        """`to_frame` as an Arrow table (the same columns and types), built from the array
        without a Python object per row."""
        flat = pa.array(self.vectors.reshape(-1))
        offsets = pa.array(np.arange(len(self) + 1, dtype=np.int32) * self.dim)
        vectors = pa.ListArray.from_arrays(offsets, flat)
        return pa.table({"video_id": pa.array(self.video_ids), "vector": vectors})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ItemVectors:
        return cls.from_raw(frame["video_id"].to_numpy(), np.stack(frame["vector"].to_numpy()))


def top_k_neighbours(
    vectors: ItemVectors, video_ids: np.ndarray, k: int, sign: int = 1
) -> np.ndarray:
    """Positions of each given video's k nearest other videos by cosine, (len(video_ids), k);
    with sign -1 the k farthest (highest -cosine), as the paper ranks its dislike model."""
    rows = vectors.positions(video_ids)
    if (rows < 0).any():
        raise KeyError(f"{int((rows < 0).sum())} video id(s) have no vector")
    k = max(min(k, len(vectors) - 1), 0)
    out = np.empty((len(rows), k), dtype=np.int64)
    if k == 0:
        return out
    for start in range(0, len(rows), 1024):
        block = rows[start : start + 1024]
        scores = sign * (vectors.vectors[block] @ vectors.vectors.T)
        scores[np.arange(len(block)), block] = -np.inf
        out[start : start + len(block)] = _first_k(scores, k)
    return out


def _first_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The first k columns of a stable argsort of -scores, row by row (highest score first, ties
    by column), without sorting whole rows: a partition finds each row's k-th highest score, and
    only the columns at or above it are sorted."""
    n_rows, n_columns = scores.shape
    kth = np.partition(scores, n_columns - k, axis=1)[:, n_columns - k]
    rows, columns = np.nonzero(scores >= kth[:, None])  # at least k per row; more on ties
    order = np.lexsort((columns, -scores[rows, columns], rows))
    rows, columns = rows[order], columns[order]
    place = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n_rows))[rows]
    return columns[place < k].reshape(n_rows, k)
