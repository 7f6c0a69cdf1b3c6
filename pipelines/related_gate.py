"""The output gate: a Great Expectations suite over the related-video table before it is written
or registered: no self-pairs or repeated pairs, ranks 1..n, finite scores, only candidate pairs,
known ids, at most N per video.
"""

from __future__ import annotations

import logging
from pathlib import Path

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd

from pipelines.gate_report import GateReport
from pipelines.gates import expectation, run_suites

log = logging.getLogger(__name__)

TABLE = "related"
SELF = "related_video_id (same as video_id)"
RANK_GAP = "rank (not its position in the list)"
NOT_FINITE = "score (not finite)"
NOT_CANDIDATE = "related_video_id (pair not among the candidates)"
UNKNOWN = "{} (ids not known)"


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


def related_suite(top_n: int) -> list:
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
) -> GateReport:
    frame = related_check_frame(table, candidate_pairs, video_ids)
    suite = related_suite(top_n)
    log.info("output gate: checking %s rows against %d expectations", f"{len(frame):,}", len(suite))
    report = run_suites("output", {TABLE: frame}, {TABLE: suite}, docs_dir, examples)
    log.info("output gate %s", "passed" if report.success else "FAILED")
    return report
