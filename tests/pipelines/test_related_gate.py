"""The output gate's tie rule on small hand tables: at most a share of lists may be one tied
score, counted over lists (not rows); the failure names the table and shows the video ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.related_gate import (
    TIED,
    related_lists_check_frame,
    related_lists_suite,
    run_related_gate,
)

TIE_CHECK = "one tied score"


def related_table(lists: int, tied: int, rows: int = 3) -> pd.DataFrame:
    """`lists` lists of `rows` rows each, the first `tied` of them with one score throughout."""
    records = []
    for i in range(lists):
        for rank in range(1, rows + 1):
            score = 0.5 if i < tied else 1.0 - 0.1 * rank
            records.append((f"v{i:02d}", rank, f"w{i:02d}-{rank}", score))
    return pd.DataFrame(records, columns=["video_id", "rank", "related_video_id", "score"])


def gate(table: pd.DataFrame, **kwargs):
    pairs = table.rename(
        columns={"video_id": "source_video_id", "related_video_id": "candidate_video_id"}
    )[["source_video_id", "candidate_video_id"]]
    video_ids = np.union1d(table["video_id"], table["related_video_id"])
    return run_related_gate(table, pairs, video_ids, 3, None, **kwargs)


def tie_findings(findings: list) -> list:
    return [finding for finding in findings if TIE_CHECK in finding.check]


def test_the_lists_frame_marks_each_tied_list_once():
    table = related_table(4, 1)
    # a one-row list is not a tie, a list of NaN scores neither
    table = pd.concat(
        [
            table,
            pd.DataFrame(
                {
                    "video_id": ["x", "y", "y"],
                    "rank": [1, 1, 2],
                    "related_video_id": ["x1", "y1", "y2"],
                    "score": [0.3, np.nan, np.nan],
                }
            ),
        ],  # fmt: skip
        ignore_index=True,
    )
    frame = related_lists_check_frame(table)
    assert frame["video_id"].tolist() == ["v00", "v01", "v02", "v03", "x", "y"]
    assert frame["rows"].tolist() == [3, 3, 3, 3, 1, 2]
    assert frame[TIED].tolist() == ["v00", None, None, None, None, None]


def test_ten_percent_tied_lists_fail_at_five_percent():
    report = gate(related_table(20, 2), max_tied_list_share=0.05)
    assert not report.success
    (finding,) = tie_findings(report.errors)
    assert finding.table == "related" and finding.column == "score"
    assert "at most 5% of lists" in finding.check
    assert finding.unexpected_count == 2 and finding.row_count == 20  # lists, not 60 rows
    assert set(finding.examples) == {"v00", "v01"}
    summary = report.summary()
    assert "related.score" in summary and "'v00'" in summary and "2 of 20" in summary
    # the other rules all pass
    assert len(report.errors) == 1


def test_ten_percent_tied_lists_pass_at_twenty_percent_with_a_warning():
    report = gate(related_table(20, 2), max_tied_list_share=0.2)
    assert report.success
    (warning,) = tie_findings(report.warnings)
    assert set(warning.examples) == {"v00", "v01"}


def test_a_share_exactly_at_the_maximum_passes():
    assert gate(related_table(20, 2), max_tied_list_share=0.1).success
    assert not gate(related_table(20, 3), max_tied_list_share=0.1).success


def test_the_default_maximum_is_five_percent():
    assert gate(related_table(20, 1)).success
    assert not gate(related_table(20, 2)).success


def test_a_table_without_ties_passes():
    report = gate(related_table(20, 0), max_tied_list_share=0.0)
    assert report.success
    assert not tie_findings(report.errors + report.warnings)


def test_the_maximum_must_be_a_share():
    with pytest.raises(ValueError, match="max_tied_list_share"):
        related_lists_suite(1.5)
