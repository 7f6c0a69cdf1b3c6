"""The output gate: a Great Expectations suite over the related-video table before it is written
or registered: no self-pairs or repeated pairs, ranks 1..n, finite scores, only candidate pairs,
known ids, at most N per video, and few lists that are one tied score (per list, below).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from models.diagnostics import tied_lists
from pipelines.gate_report import GateReport
from pipelines.gates import expectation, run_suites

log = logging.getLogger(__name__)

TABLE = "related"
SELF = "related_video_id (same as video_id)"
RANK_GAP = "rank (not its position in the list)"
NOT_FINITE = "score (not finite)"
NOT_CANDIDATE = "related_video_id (pair not among the candidates)"
UNKNOWN = "{} (ids not known)"
# The tie rule is about lists, not rows: it runs on a frame of one row per list (see below).
LISTS = "related_lists"
TIED = "score (list is one tied score)"


def related_check_frame(
    table: pd.DataFrame, candidate_pairs: pd.DataFrame, video_ids: np.ndarray
) -> pd.DataFrame:
    """The table plus helper columns holding the offending value where a row breaks a rule
    (null elsewhere), so that the data docs show the bad values themselves."""
    frame = table[["video_id", "rank", "related_video_id", "score"]].copy()
    source, target = frame["video_id"], frame["related_video_id"]
    frame[SELF] = target.where(source == target)
    position = frame.groupby("video_id", sort=False).cumcount() + 1
    frame[RANK_GAP] = frame["rank"].where(frame["rank"] != position)
    score = pd.to_numeric(frame["score"], errors="coerce")
    frame[NOT_FINITE] = frame["score"].where(~np.isfinite(score.fillna(np.inf)))
    known_pairs = pd.MultiIndex.from_arrays(
        [candidate_pairs["source_video_id"], candidate_pairs["candidate_video_id"]]
    )
    is_candidate = pd.MultiIndex.from_arrays([source, target]).isin(known_pairs)
    frame[NOT_CANDIDATE] = target.where(~is_candidate)
    catalog = set(map(str, video_ids))
    for column in ("video_id", "related_video_id"):
        frame[UNKNOWN.format(column)] = frame[column].where(~frame[column].isin(catalog))
    return frame


def related_lists_check_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per list: video_id, its number of rows, and TIED holding the video_id where the
    list has >= 2 rows and all its scores are equal (null elsewhere), for the data docs."""
    tied = tied_lists(table)
    sizes = table.groupby("video_id", sort=True).size()
    ids = tied.index.to_numpy()
    return pd.DataFrame(
        {
            "video_id": ids,
            "rows": sizes.reindex(tied.index).to_numpy(),
            TIED: np.where(tied.to_numpy(), ids.astype(object), None),
        }
    )


def related_lists_suite(max_tied_list_share: float) -> list:
    """The per-list rules. The expectation runs over the per-list frame, so `mostly` counts
    lists: it fails exactly when tied lists / lists > max_tied_list_share. (On the row frame the
    share would be diluted by the rows of long lists, and a row_condition would tie us to GX's
    changing condition syntax.) The 1e-12 keeps a share exactly at the maximum from failing on
    float rounding of 1 - share; a real excess is at least 1 / lists, far larger."""
    if not 0 <= max_tied_list_share <= 1:
        raise ValueError(f"max_tied_list_share must be in [0, 1], not {max_tied_list_share}")
    import great_expectations.expectations as gxe  # imported here: seconds to load

    share = f"{max_tied_list_share * 100:g}%"
    return [
        expectation(
            gxe.ExpectColumnValuesToBeNull,
            TABLE,
            "score",
            f"at most {share} of lists are one tied score (counted over lists, one row each)",
            column=TIED,
            mostly=max(0.0, 1.0 - max_tied_list_share - 1e-12),
        )
    ]


def related_suite(top_n: int) -> list:
    import great_expectations.expectations as gxe  # imported here: seconds to load

    def expect(kind: type, about: str | None, check: str, **kwargs) -> object:
        return expectation(kind, TABLE, about, check, **kwargs)

    return [
        expect(gxe.ExpectTableRowCountToBeBetween, None, "table is not empty", min_value=1),
        expect(
            gxe.ExpectColumnValuesToBeNull,
            "related_video_id",
            "no video is related to itself",
            column=SELF,
        ),
        expect(
            gxe.ExpectCompoundColumnsToBeUnique,
            "video_id, related_video_id",
            "a pair appears once",
            column_list=["video_id", "related_video_id"],
        ),
        expect(
            gxe.ExpectColumnValuesToBeNull,
            "rank",
            "ranks run 1, 2, 3, ... per video",
            column=RANK_GAP,
        ),
        expect(
            gxe.ExpectColumnValuesToBeBetween,
            "rank",
            f"at most {top_n} per video",
            column="rank",
            min_value=1,
            max_value=top_n,
        ),
        expect(
            gxe.ExpectColumnValuesToBeNull, "score", "score is a finite number", column=NOT_FINITE
        ),
        expect(
            gxe.ExpectColumnValuesToBeNull,
            "related_video_id",
            "every pair is a candidate pair (stage 1)",
            column=NOT_CANDIDATE,
        ),
        *(
            expect(
                gxe.ExpectColumnValuesToBeNull,
                column,
                "id is known in videos",
                column=UNKNOWN.format(column),
            )
            for column in ("video_id", "related_video_id")
        ),
        *(
            expect(gxe.ExpectColumnValuesToNotBeNull, column, "value is present", column=column)
            for column in ("video_id", "rank", "related_video_id", "score")
        ),
    ]


def run_related_gate(
    table: pd.DataFrame,
    candidate_pairs: pd.DataFrame,
    video_ids: np.ndarray,
    top_n: int,
    docs_dir: Path | None,
    examples: int = 5,
    max_tied_list_share: float = 0.05,
) -> GateReport:
    """Check the related table (rows) and its lists (one row per list: the tie rule, at most
    `max_tied_list_share` of lists may be one tied score); findings of both name table
    `related`."""
    frames = {
        TABLE: related_check_frame(table, candidate_pairs, video_ids),
        LISTS: related_lists_check_frame(table),
    }
    suites = {TABLE: related_suite(top_n), LISTS: related_lists_suite(max_tied_list_share)}
    log.info(
        "output gate: checking %s rows in %s lists against %d expectations",
        f"{len(frames[TABLE]):,}",
        f"{len(frames[LISTS]):,}",
        sum(len(suite) for suite in suites.values()),
    )
    report = run_suites("output", frames, suites, docs_dir, examples)
    log.info("output gate %s", "passed" if report.success else "FAILED")
    return report
