"""Stage 1, the relevance gate: video pairs whose profile cosine reaches the threshold e, at most M
per source, found exactly by prefix filtering over blocks of sources (never a dense n x n matrix).

Why it stays sparse (the AllPairs idea, Bayardo et al. 2007, exact for binary rows). Rows with a
and b active columns and o shared ones have cosine o / sqrt(a b), so cosine >= e needs
o >= T = ceil(e sqrt(a b)), and b within [e^2 a, a / e^2]. Number the columns rarest first and keep
of each row its first a - T + k columns, its prefix (k <= T). Claim: a qualifying pair shares at
least k prefix columns. Proof: let row i's prefix end no later than row j's in that order. Their
shared columns after the end of i's prefix lie in the rest of i, T - k columns; so at least
o - (T - k) >= k shared columns come before it, and those lie in both prefixes. Hence the sparse
product of the prefixes (which leaves out the frequent columns: a video type carried by half the
catalog) finds every qualifying pair as an entry >= k, and the exact overlap is that entry plus
the rest of the earlier-ending row found in the other row. T depends on both lengths: rows are
grouped by length, and each pair of groups uses the least T of its lengths, which keeps the claim.

Memory: the output, one block's candidate pairs, and the rows as bits (n x columns / 8 bytes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.profile import binary_rows

PAIR_COLUMNS = ("source_video_id", "candidate_video_id", "content_similarity")
# Column of a candidate table: False on a pair that only fills a short list (below the gate).
GATED = "gated"

# Rows whose lengths differ by at most this ratio share a length group (each length is its own group
# up to 20). Exactness does not depend on it: wider groups mean fewer but looser products.
_GROUP_RATIO = 1.05
# Pairs whose overlap `pair_similarity` computes at once: bounds its temporary arrays.
_CHECK_CHUNK = 1 << 18
# Slack on the required overlap, so that a float rounding can never drop a qualifying pair.
_EPS = 1e-9

# k of the module docstring: prefixes one column longer than AllPairs' (k = 1) cost more in the
# sparse product but leave about three times fewer pairs to check one by one (measured on the
# synthetic catalog); exactness does not depend on it.
_SHARED_IN_PREFIX = 2

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


class _Prefixes(NamedTuple):
    matrix: sp.csr_matrix  # the prefix columns (transposed on the candidate side)
    last: np.ndarray  # rank of each row's last prefix column, -1 for a row without prefix
    rest: np.ndarray  # (rows, required - shared) the columns after the prefix


def candidate_arrays(
    profiles: sp.spmatrix,
    threshold: float,
    max_per_source: int,
    block_size: int,
    progress: Callable[[int], None] | None = None,
    tie_break: np.ndarray | None = None,
    cut: CutStats | None = None,
    sources: np.ndarray | None = None,
) -> Pairs:
    """(source_rows, candidate_rows, similarity): every pair of distinct rows with cosine >=
    `threshold`, at most `max_per_source` per source (highest first), sorted by source row,
    similarity descending, then candidate. Ties of similarity go to the candidate with the higher
    `tie_break` (one value per row, e.g. its training popularity), then the lower row; without
    it, to the lower row. Rows without an active column get no candidates. `sources`: the rows
    whose candidates are wanted, ascending (all when None). `progress(rows)` is called after each
    block with the number of source rows it covered (tqdm's `update`); `cut` counts the sources
    whose cap fell inside a tie of similarity."""
    _check_arguments(threshold, max_per_source, block_size)
    index = _PrefixIndex(binary_rows(profiles), threshold)
    order = _tie_order(tie_break, index.n_rows)
    output = _Output()
    wanted = np.arange(index.n_rows, dtype=np.int64) if sources is None else _rows(sources)
    for start in range(0, len(wanted), block_size):
        rows = wanted[start : start + block_size]
        output.append(_top(*index.pairs_of(rows), max_per_source, order, cut))
        if progress is not None:
            progress(len(rows))
    return output.arrays()


def fill_arrays(
    profiles: sp.spmatrix,
    gated: Pairs,
    minimum: int,
    floor: float,
    pool: int,
    block_size: int,
    tie_break: np.ndarray | None = None,
) -> Pairs:
    """The pairs that fill short candidate lists: for each row with fewer than `minimum` pairs in
    `gated` (stage 1's output), its next `pool` most similar rows with cosine >= `floor` (at
    least enough to reach `minimum`: the later stages choose among them); the same order and tie
    rule as `candidate_arrays`. Only those added pairs are returned. A row without an active
    column stays without candidates."""
    empty = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    if minimum < 1:
        return empty
    n = profiles.shape[0]
    counts = np.bincount(gated[0], minlength=n)
    short = np.flatnonzero(counts < minimum)
    if not len(short):
        return empty
    wanted = np.maximum(pool, minimum - counts[short])
    # A short row's gated pairs are its most similar at the floor too: ask for them as well.
    most = int((wanted + counts[short]).max())
    source, candidate, similarity = candidate_arrays(
        profiles, floor, most, block_size, tie_break=tie_break, sources=short
    )
    new = ~np.isin(source * n + candidate, gated[0] * n + gated[1])
    source, candidate, similarity = source[new], candidate[new], similarity[new]
    # Sorted by source: a pair's place among its source's new pairs, the most similar first.
    first = np.searchsorted(source, source, side="left")
    limit = np.zeros(n, np.int64)
    limit[short] = wanted
    keep = np.arange(len(source)) - first < limit[source]
    return source[keep], candidate[keep], similarity[keep]


@dataclass
class CutStats:
    """How the cap of M candidates per source fell: sources with more than M qualifying
    candidates, and those of them whose M-th and (M+1)-th candidates tie on similarity (the cut
    there was made by the tie-break, not by the content)."""

    sources: int = 0
    capped: int = 0
    cut_in_tie: int = 0

    def to_dict(self) -> dict[str, float]:
        return {
            "capped_sources": float(self.capped),
            "capped_share": self.capped / self.sources if self.sources else 0.0,
            "cut_in_tie_sources": float(self.cut_in_tie),
            "cut_in_tie_share": self.cut_in_tie / self.sources if self.sources else 0.0,
        }


def _tie_order(tie_break: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """Per row, its place when rows are ordered by tie_break descending, then row ascending."""
    if tie_break is None:
        return None
    values = np.asarray(tie_break, dtype=np.float64)
    if values.shape != (n_rows,):
        raise ValueError(f"tie_break: {values.shape} values for {n_rows} profile rows")
    if not np.isfinite(values).all():
        raise ValueError("tie_break: values must be finite")
    order = np.empty(n_rows, dtype=np.int64)
    order[np.lexsort((np.arange(n_rows), -values))] = np.arange(n_rows)
    return order


def candidate_pairs(
    video_ids: Sequence[str] | np.ndarray,
    profiles: sp.spmatrix,
    threshold: float,
    max_per_source: int,
    block_size: int,
    progress: Callable[[int], None] | None = None,
    tie_break: np.ndarray | None = None,
) -> pd.DataFrame:
    """`candidate_arrays` as a table of video ids: source_video_id, candidate_video_id,
    content_similarity (float64), in the same order. `video_ids[i]` is the video of row i."""
    ids = np.asarray(video_ids)
    if len(ids) != profiles.shape[0]:
        raise ValueError(f"{len(ids)} video ids for {profiles.shape[0]} profile rows")
    sources, candidates, similarity = candidate_arrays(
        profiles, threshold, max_per_source, block_size, progress, tie_break
    )
    return pd.DataFrame(
        dict(zip(PAIR_COLUMNS, (ids[sources], ids[candidates], similarity), strict=True))
    )


def pair_similarity(profiles: sp.spmatrix, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Exact cosine (float64) of the profile rows `rows_a[k]` and `rows_b[k]`; 0 where either row
    has no active column."""
    profiles = binary_rows(profiles)
    rows_a, rows_b = _rows(rows_a), _rows(rows_b)
    if rows_a.shape != rows_b.shape:
        raise ValueError(f"pair rows differ in shape: {rows_a.shape} and {rows_b.shape}")
    lengths = np.diff(profiles.indptr).astype(np.int64)
    overlap = _overlap(_bitsets(profiles), rows_a, rows_b)
    return _cosine(overlap, lengths[rows_a], lengths[rows_b])


def shared_values(
    profiles: sp.spmatrix,
    source_rows: np.ndarray,
    candidate_rows: np.ndarray,
    tokens: Sequence[str],
) -> list[list[str]]:
    """Per pair, the tokens (`attribute=value`) of the columns both rows carry, in column order:
    the reason a candidate is relevant to its source."""
    profiles = binary_rows(profiles)
    if len(tokens) != profiles.shape[1]:
        raise ValueError(f"{len(tokens)} tokens for {profiles.shape[1]} profile columns")
    source_rows, candidate_rows = _rows(source_rows), _rows(candidate_rows)
    both = profiles[source_rows].multiply(profiles[candidate_rows]).tocsr()
    both.eliminate_zeros()
    both.sort_indices()
    names = np.asarray(tokens, dtype=object)[both.indices]
    return (
        [part.tolist() for part in np.split(names, both.indptr[1:-1])] if len(source_rows) else []
    )


def dense_reference(
    profiles: sp.spmatrix,
    threshold: float,
    max_per_source: int,
    block_size: int | None = None,
    source_rows: np.ndarray | None = None,
) -> Pairs:
    """The brute-force answer `candidate_arrays` must equal, for tests and the benchmark only:
    every cosine of a block of sources against all n rows, as a dense block x n array (one block
    of all sources by default: small inputs only). `source_rows` (ascending) restricts the sources,
    to sample a large input."""
    _check_arguments(threshold, max_per_source, block_size or 1)
    profiles = binary_rows(profiles)
    lengths = np.diff(profiles.indptr).astype(np.int64)
    sources = np.arange(profiles.shape[0]) if source_rows is None else _rows(source_rows)
    block_size = block_size or max(len(sources), 1)
    parts = [
        _dense_block(
            profiles, lengths, sources[start : start + block_size], threshold, max_per_source
        )
        for start in range(0, len(sources), block_size)
    ]
    return _concat(parts)


def candidate_summary(pairs: pd.DataFrame, n_videos: int, few: int) -> dict[str, float]:
    """Figures for a run's log: pairs, those that fill short lists (column GATED False) and their
    sources, coverage, pairs per source (over all `n_videos`, a video without candidates counting
    0), the share of videos with fewer than `few` candidates, and the similarity distribution
    (NaN without pairs)."""
    per_source = pairs.groupby("source_video_id", sort=False).size().to_numpy()
    counts = np.zeros(max(n_videos, len(per_source)), dtype=np.int64)
    counts[: len(per_source)] = per_source
    similarity = pairs["content_similarity"].to_numpy(dtype=np.float64)
    quantiles = (
        np.quantile(similarity, [0.0, 0.1, 0.5, 0.9]) if len(similarity) else np.full(4, np.nan)
    )
    has_counts = len(counts) > 0
    gated = pairs[GATED].to_numpy(dtype=bool) if GATED in pairs else np.ones(len(pairs), bool)
    return {
        "filled_pairs": float((~gated).sum()),
        "filled_sources": float(pairs.loc[~gated, "source_video_id"].nunique()),
        "pairs": float(len(pairs)),
        "sources_with_candidates": float(len(per_source)),
        "coverage": float(len(per_source) / n_videos) if n_videos else float("nan"),
        "pairs_per_source_mean": float(counts.mean()) if has_counts else float("nan"),
        "pairs_per_source_median": float(np.median(counts)) if has_counts else float("nan"),
        "pairs_per_source_p90": float(np.quantile(counts, 0.9)) if has_counts else float("nan"),
        "few_candidates_share": float((counts < few).mean()) if has_counts else float("nan"),
        "similarity_mean": float(similarity.mean()) if len(similarity) else float("nan"),
        "similarity_min": float(quantiles[0]),
        "similarity_p10": float(quantiles[1]),
        "similarity_median": float(quantiles[2]),
        "similarity_p90": float(quantiles[3]),
    }


class _Output:
    """The pairs of all blocks, appended to three arrays grown in place. Large arrays live in their
    own memory maps, which realloc grows without a copy; holding the blocks' parts and joining them
    at the end would need twice the output, and the parts would fragment the heap. Growth is by a
    quarter, not doubled: resize zero-fills the new room, so all of it becomes resident."""

    def __init__(self) -> None:
        self.size = 0
        self.columns = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    def append(self, pairs: Pairs) -> None:
        end = self.size + len(pairs[0])
        if end > len(self.columns[0]):
            for column in self.columns:
                column.resize(max(end, len(column) + len(column) // 4, 1 << 16), refcheck=False)
        for column, values in zip(self.columns, pairs, strict=True):
            column[self.size : end] = values
        self.size = end

    def arrays(self) -> Pairs:
        for column in self.columns:
            column.resize(self.size, refcheck=False)
        return self.columns


class _PrefixIndex:
    """The prefix matrices per pair of length groups, built once, probed block by block."""

    def __init__(self, profiles: sp.csr_matrix, threshold: float):
        self.threshold = threshold
        self.n_rows = profiles.shape[0]
        self.lengths = np.diff(profiles.indptr).astype(np.int64)
        # Columns renumbered rarest first (ties: column ascending), rows re-sorted, so that a
        # row's prefix is its first entries.
        frequency = np.bincount(profiles.indices, minlength=profiles.shape[1])
        rank = np.empty(profiles.shape[1], dtype=np.int64)
        rank[np.argsort(frequency, kind="stable")] = np.arange(profiles.shape[1])
        self.ranked = sp.csr_matrix(
            (profiles.data, rank[profiles.indices], profiles.indptr), shape=profiles.shape
        )
        self.ranked.sort_indices()
        self.bitsets = _bitsets(self.ranked)
        self.group_of_row, self.group_low, self.group_high = _length_groups(self.lengths)
        self.members = [np.flatnonzero(self.group_of_row == g) for g in range(len(self.group_low))]
        self._candidate_side: dict[tuple[int, int, int], _Prefixes] = {}

    def pairs_of(self, rows: np.ndarray) -> Pairs:
        """Every pair (source in `rows`, other row) with cosine >= threshold, unordered."""
        e, parts = self.threshold, []
        groups = self.group_of_row[rows]
        for source_group in np.unique(groups[groups >= 0]):
            sources = rows[groups == source_group]
            ranked, prefixes = self.ranked[sources], {}
            low, high = self.group_low[source_group], self.group_high[source_group]
            for group in range(len(self.group_low)):
                # Lengths b and a can pair only if e^2 a <= b <= a / e^2.
                if self.group_high[group] < e * e * low - _EPS:
                    continue
                if self.group_low[group] > high / (e * e) + _EPS:
                    break
                required = _required_overlap(e, low, self.group_low[group])
                shared = min(_SHARED_IN_PREFIX, required)
                if required not in prefixes:
                    prefixes[required] = _prefixes(ranked, required, shared)
                parts.append(self._pairs(sources, prefixes[required], group, required, shared))
        return _concat(parts)

    def _pairs(
        self, sources: np.ndarray, left: _Prefixes, group: int, required: int, shared: int
    ) -> Pairs:
        """Pairs of `sources` (their prefixes: `left`) and the rows of a length group."""
        key = (group, required, shared)
        if key not in self._candidate_side:
            prefixes = _prefixes(self.ranked[self.members[group]], required, shared)
            self._candidate_side[key] = prefixes._replace(matrix=prefixes.matrix.T.tocsr())
        right = self._candidate_side[key]
        product = left.matrix @ right.matrix
        if shared > 1:
            product.data[product.data < shared] = 0
            product.eliminate_zeros()
        i = np.repeat(np.arange(len(sources)), np.diff(product.indptr))
        j = product.indices
        overlap = product.data.astype(np.int64)
        source, candidate = sources[i], self.members[group][j]
        if right.rest.shape[1]:
            # The shared columns up to the earlier prefix end were counted by the product; the
            # others lie in the rest of the row whose prefix ends first.
            source_first = left.last[i] <= right.last[j]
            first = np.flatnonzero(source_first)
            overlap[first] += self._in_rows(candidate[first], left.rest[i[first]])
            first = np.flatnonzero(~source_first)
            overlap[first] += self._in_rows(source[first], right.rest[j[first]])
        similarity = _cosine(overlap, self.lengths[source], self.lengths[candidate])
        kept = (similarity >= self.threshold) & (source != candidate)
        return source[kept], candidate[kept], similarity[kept]

    def _in_rows(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """How many of `columns[k]` (a row of ranked column ids) row `rows[k]` carries."""
        n_words = self.bitsets.shape[1]
        words = np.take(self.bitsets.ravel(), rows[:, None] * n_words + (columns >> 6))
        return np.count_nonzero((words >> (columns & 63).astype(np.uint64)) & np.uint64(1), axis=1)


def _prefixes(block: sp.csr_matrix, required: int, shared: int) -> _Prefixes:
    """Of each row (ranked columns, sorted): its first (length - required + shared) columns (none
    if that is < 1), the rank of its last prefix column, and its other (required - shared)."""
    lengths = np.diff(block.indptr)
    prefix_length = lengths - required + shared
    has_prefix = prefix_length > 0
    prefix_length = np.where(has_prefix, prefix_length, 0)
    position = np.arange(block.nnz) - np.repeat(block.indptr[:-1], lengths)
    in_prefix = position < np.repeat(prefix_length, lengths)
    indptr = np.zeros(block.shape[0] + 1, dtype=np.int64)
    np.cumsum(prefix_length, out=indptr[1:])
    matrix = sp.csr_matrix(
        (block.data[in_prefix], block.indices[in_prefix], indptr), shape=block.shape
    )
    last = np.full(block.shape[0], -1, dtype=np.int64)
    last[has_prefix] = block.indices[(block.indptr[:-1] + prefix_length - 1)[has_prefix]]
    rest = np.zeros((block.shape[0], required - shared), dtype=np.int64)
    if required > shared:
        in_rest = ~in_prefix & np.repeat(has_prefix, lengths)
        rest[has_prefix] = block.indices[in_rest].reshape(-1, required - shared)
    return _Prefixes(matrix, last, rest)


def _length_groups(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group per row (-1 for an empty row) and each group's lowest and highest length."""
    distinct = np.unique(lengths[lengths > 0])
    lows, highs, group_of_length = [], [], {}
    for length in distinct.tolist():
        if not lows or length > lows[-1] * _GROUP_RATIO:
            lows.append(length)
            highs.append(length)
        highs[-1] = length
        group_of_length[length] = len(lows) - 1
    lookup = np.full(int(lengths.max(initial=0)) + 1, -1, dtype=np.int64)
    for length, group in group_of_length.items():
        lookup[length] = group
    return lookup[lengths], np.asarray(lows, dtype=np.int64), np.asarray(highs, dtype=np.int64)


def _required_overlap(threshold: float, low_a: int, low_b: int) -> int:
    """The least overlap any pair of the two length groups needs (at least 1)."""
    return max(1, math.ceil(threshold * math.sqrt(low_a * low_b) - _EPS))


def _bitsets(profiles: sp.csr_matrix) -> np.ndarray:
    """Each row as bits (n x ceil(columns / 64) uint64): overlaps become AND plus popcount."""
    n, n_columns = profiles.shape
    words = max((n_columns + 63) // 64, 1)
    bits = np.zeros((n, words), dtype=np.uint64)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(profiles.indptr))
    columns = profiles.indices.astype(np.int64)
    np.bitwise_or.at(
        bits, (rows, columns >> 6), np.left_shift(np.uint64(1), (columns & 63).astype(np.uint64))
    )
    return bits


def _overlap(bits: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    overlap = np.empty(len(rows_a), dtype=np.int64)
    for start in range(0, len(rows_a), _CHECK_CHUNK):
        end = start + _CHECK_CHUNK
        both = bits[rows_a[start:end]] & bits[rows_b[start:end]]
        overlap[start:end] = np.bitwise_count(both).sum(axis=1, dtype=np.int64)
    return overlap


def _cosine(overlap: np.ndarray, length_a: np.ndarray, length_b: np.ndarray) -> np.ndarray:
    """sqrt(o^2 / (a b)) in float64, 0 where a row is empty. Not o / sqrt(a b): 2 / sqrt(8) and
    1 / sqrt(2) differ in the last bit, which would break true ties by rounding noise instead of
    by row. A division and a square root, both correctly rounded, of the same rational give the
    same float, so equal cosines are equal values (exact integers below 2^53)."""
    overlap = overlap.astype(np.float64)
    product = length_a.astype(np.float64) * length_b.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.sqrt(overlap * overlap / product)
    return np.where(product > 0, similarity, 0.0)


def _dense_block(
    profiles: sp.csr_matrix,
    lengths: np.ndarray,
    rows: np.ndarray,
    threshold: float,
    max_per_source: int,
) -> Pairs:
    overlap = np.asarray(profiles @ profiles[rows].toarray().astype(np.float64).T).T
    local, candidate = np.nonzero(overlap)
    source = rows[local]
    similarity = _cosine(
        overlap[local, candidate].round().astype(np.int64), lengths[source], lengths[candidate]
    )
    kept = (similarity >= threshold) & (source != candidate)
    return _top(source[kept], candidate[kept], similarity[kept], max_per_source)


def _top(
    source: np.ndarray,
    candidate: np.ndarray,
    similarity: np.ndarray,
    limit: int,
    order: np.ndarray | None = None,
    cut: CutStats | None = None,
) -> Pairs:
    """Sort by source, similarity descending, candidate (by its place in `order` when given);
    keep the first `limit` per source, counting in `cut` the sources cut inside a tie.

    One integer key sorts twice as fast as a three-key lexsort: the similarity enters it by its
    rank among the few distinct values (hashed: np.unique would sort every pair once more). Before
    sorting, a count per (source, similarity) drops the pairs with `limit` better ones ahead."""
    if len(source) == 0:
        return source, candidate, similarity
    tie_key = candidate if order is None else order[candidate]
    codes, values = pd.factorize(similarity)
    rank = np.empty(len(values), dtype=np.int64)  # 0 for the highest similarity
    rank[np.argsort(-values, kind="stable")] = np.arange(len(values))
    local = source - source.min()
    cell = local * len(values) + rank[codes]
    cells = (int(local.max()) + 1) * len(values)
    if cells <= 4 * len(source):
        counts = np.bincount(cell, minlength=cells)
        before = np.cumsum(counts) - counts
        # One spare beyond the cap: it tells whether the cut fell inside a tie.
        near = before[cell] - before[local * len(values)] < limit + 1
        source, candidate, similarity, cell, tie_key = (
            source[near],
            candidate[near],
            similarity[near],
            cell[near],
            tie_key[near],
        )
    width = int(tie_key.max()) + 1
    if cells * width < 2**63:
        sort = np.argsort(cell * width + tie_key)
    else:
        sort = np.lexsort((tie_key, -similarity, source))
    source, candidate, similarity = source[sort], candidate[sort], similarity[sort]
    first = np.r_[True, source[1:] != source[:-1]]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(source)), 0))
    place = np.arange(len(source)) - starts
    if cut is not None:
        spare = np.flatnonzero(place == limit)  # the first candidate beyond the cap
        cut.sources += int(first.sum())
        cut.capped += len(spare)
        cut.cut_in_tie += int((similarity[spare] == similarity[spare - 1]).sum())
    kept = place < limit
    return source[kept], candidate[kept], similarity[kept]


def _concat(parts: list[Pairs]) -> Pairs:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    source, candidate, similarity = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    return source.astype(np.int64), candidate.astype(np.int64), similarity.astype(np.float64)


def _rows(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).ravel()


def _check_arguments(threshold: float, max_per_source: int, block_size: int) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if max_per_source < 1:
        raise ValueError(f"max_per_source must be at least 1, got {max_per_source}")
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
