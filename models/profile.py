"""Video profiles as multi-hot rows: per attribute the top-K most frequent values, one column each.

The vocabulary is fitted once on the videos table; encoding maps any videos table onto it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

VOCABULARY_COLUMNS = ("column", "attribute", "kind", "value", "videos")
KINDS = ("single", "multi")


@dataclass(frozen=True)
class ProfileVocabulary:
    """The kept values: one row per matrix column, ordered by attribute (configured order), then by
    frequency descending, then by value ascending."""

    frame: pd.DataFrame  # column (int, 0..n-1), attribute, kind, value (str), videos (count)
    attributes: tuple[str, ...]  # every attribute, in the configured order, even with no value kept

    @property
    def n_columns(self) -> int:
        return len(self.frame)

    @property
    def attribute_of_column(self) -> np.ndarray:
        """Position in `attributes` of each column's attribute (int64, one per column)."""
        position = {name: i for i, name in enumerate(self.attributes)}
        return self.frame["attribute"].map(position).to_numpy(dtype=np.int64)

    def tokens(self) -> list[str]:
        """`attribute=value` per column: the readable name of a column, used in reasons."""
        return (self.frame["attribute"] + "=" + self.frame["value"]).tolist()

    def to_frame(self) -> pd.DataFrame:
        """A plain table for Parquet; `from_frame` reads it back."""
        return self.frame.copy()

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, attributes: Sequence[str] | None = None
    ) -> ProfileVocabulary:
        """The vocabulary of a `to_frame` table. `attributes` restores the configured order
        (and attributes without any kept value); by default, the order in the table."""
        missing = set(VOCABULARY_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"vocabulary frame lacks columns {sorted(missing)}")
        frame = _typed(frame[list(VOCABULARY_COLUMNS)].reset_index(drop=True))
        if not np.array_equal(frame["column"].to_numpy(), np.arange(len(frame))):
            raise ValueError("vocabulary frame: `column` must be 0..n-1 in row order")
        names = tuple(attributes) if attributes is not None else tuple(frame["attribute"].unique())
        unknown = set(frame["attribute"]) - set(names)
        if unknown:
            raise ValueError(f"vocabulary frame: attributes {sorted(unknown)} not in {names}")
        return cls(frame, names)


def fit_vocabulary(
    videos: pd.DataFrame, attributes: Mapping[str, str], top_k: int
) -> ProfileVocabulary:
    """Per attribute the `top_k` values carried by the most videos (ties: value ascending).

    `attributes` maps a column of `videos` to "single" (one string or None per row) or "multi"
    (a list or array of strings per row, maybe empty). Missing and empty-string values are no value.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    parts = []
    for name, kind in attributes.items():
        if kind not in KINDS:
            raise ValueError(f"attribute {name!r}: kind {kind!r} is not one of {KINDS}")
        _, values = _row_values(videos[name])
        counts = pd.Series(values).value_counts(sort=False)
        kept = (
            pd.DataFrame({"value": counts.index.astype(str), "videos": counts.to_numpy()})
            .sort_values(["videos", "value"], ascending=[False, True], kind="stable")
            .head(top_k)
        )
        parts.append(kept.assign(attribute=name, kind=kind))
    frame = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["value", "videos", "attribute", "kind"])
    )
    frame.insert(0, "column", np.arange(len(frame)))
    return ProfileVocabulary(_typed(frame[list(VOCABULARY_COLUMNS)]), tuple(attributes))


def encode_profiles(videos: pd.DataFrame, vocabulary: ProfileVocabulary) -> sp.csr_matrix:
    """Binary float32 CSR, one row per video (in `videos` order), one column per kept value;
    values outside the vocabulary are ignored."""
    rows, columns = [], []
    for name, kept in vocabulary.frame.groupby("attribute", sort=False):
        row, values = _row_values(videos[name])
        column = pd.Index(kept["value"]).get_indexer(values)
        known = column >= 0
        rows.append(row[known])
        columns.append(kept["column"].to_numpy(dtype=np.int64)[column[known]])
    return _binary_csr(rows, columns, (len(videos), vocabulary.n_columns))


def profile_indices(profiles: sp.csr_matrix) -> list[list[int]]:
    """The active columns of each row, ascending: what the feature store keeps as Array(Int64)."""
    profiles = binary_rows(profiles)
    parts = np.split(profiles.indices.astype(np.int64), profiles.indptr[1:-1])
    return [part.tolist() for part in parts] if profiles.shape[0] else []


def matrix_from_indices(indices: Sequence[Sequence[int]], n_columns: int) -> sp.csr_matrix:
    """The binary float32 CSR of `profile_indices` output (duplicates collapsed)."""
    lengths = np.fromiter((len(row) for row in indices), dtype=np.int64, count=len(indices))
    flat = (
        np.concatenate([np.asarray(row, dtype=np.int64) for row in indices])
        if lengths.sum()
        else np.zeros(0, dtype=np.int64)
    )
    if len(flat) and (flat.min() < 0 or flat.max() >= n_columns):
        raise ValueError(f"column indices must lie in [0, {n_columns})")
    rows = np.repeat(np.arange(len(indices), dtype=np.int64), lengths)
    return _binary_csr([rows], [flat], (len(indices), n_columns))


def binary_rows(matrix: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """The float32 CSR copy of `matrix` with sorted, unique indices and every nonzero set to 1."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def _row_values(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(row position, value as str) for every distinct value a row carries, single or multi."""
    exploded = pd.Series(column.to_numpy(), index=np.arange(len(column))).explode()
    exploded = exploded[exploded.notna()].astype(str)
    exploded = exploded[exploded != ""]
    pairs = pd.DataFrame({"row": exploded.index.to_numpy(), "value": exploded.to_numpy()})
    pairs = pairs.drop_duplicates()
    return pairs["row"].to_numpy(dtype=np.int64), pairs["value"].to_numpy(dtype=object)


def _binary_csr(
    rows: list[np.ndarray], columns: list[np.ndarray], shape: tuple[int, int]
) -> sp.csr_matrix:
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    column = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
    matrix = sp.coo_matrix(
        (np.ones(len(row), dtype=np.float32), (row, column)), shape=shape
    ).tocsr()
    return binary_rows(matrix)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(
        {"column": np.int64, "attribute": str, "kind": str, "value": str, "videos": np.int64}
    ).reset_index(drop=True)
