"""What a data gate found: each failed expectation (an error) or one passed only within its
tolerance (a warning), with table, column, failing count, examples and, where one is plain, a
hint; light to import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Finding:
    """One expectation that failed (an error) or passed only within its tolerance (a warning)."""

    table: str
    column: str | None
    check: str
    expectation: str
    unexpected_count: int | None
    row_count: int
    examples: list = field(default_factory=list)
    observed: object = None
    hint: str | None = None  # what to do about it, where that is plain
    # A warning is an expectation passed within its tolerance; False: a profile check's warning
    # (pipelines/profile_checks.py), which has no tolerance.
    tolerated: bool = True

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        what = f"{where}: {self.check} [{self.expectation}]"
        if self.unexpected_count is not None and self.row_count:
            share = self.unexpected_count / self.row_count
            what += f": {self.unexpected_count:,} of {self.row_count:,} rows ({share:.2%})"
        elif self.observed is not None:
            what += f": observed {self.observed}"
        if self.examples:
            what += f", e.g. {', '.join(repr(_plain(v)) for v in self.examples)}"
        return what


@dataclass
class GateReport:
    gate: str
    success: bool
    errors: list[Finding]
    warnings: list[Finding]
    expectations: int
    docs_index: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)  # table -> the file it was read from

    def summary(self) -> str:
        head = (
            f"{self.gate} gate passed: {self.expectations} expectations"
            if self.success
            else f"{self.gate} gate FAILED: {len(self.errors)} of {self.expectations} expectations"
        )
        lines = [head]
        for finding in self.errors:
            lines.append(f"  x {finding.describe()}")
            lines += [f"      hint: {finding.hint}"] if finding.hint else []
        for finding in self.warnings:
            note = " (within tolerance)" if finding.tolerated else ""
            lines.append(f"  ! {finding.describe()}{note}")
            lines += [f"      hint: {finding.hint}"] if finding.hint else []
        for table in dict.fromkeys(f.table for f in self.errors + self.warnings):
            if table in self.sources:
                lines.append(f"  {table}: {self.sources[table]}")
        if self.docs_index is not None:
            lines.append(f"  data docs: {self.docs_index}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "gate": self.gate,
            "success": self.success,
            "expectations": self.expectations,
            "sources": self.sources,
            "errors": [asdict(f) | {"examples": _plain(f.examples)} for f in self.errors],
            "warnings": [asdict(f) | {"examples": _plain(f.examples)} for f in self.warnings],
        }


class GateFailed(RuntimeError):
    """The gate found errors; `report` says which."""

    def __init__(self, report: GateReport):
        super().__init__(report.summary())
        self.report = report


def finding(
    table: str,
    column: str | None,
    check: tuple[str, str],
    rows: int,
    observed: str,
    hint: str,
    examples: list | None = None,
    unexpected: int | None = None,
    tolerated: bool = True,
) -> Finding:
    """A finding of a check made outside Great Expectations (on the file itself, or a profile
    check); `check` is its text and expectation name."""
    return Finding(
        table=table,
        column=column,
        check=check[0],
        expectation=check[1],
        unexpected_count=unexpected,
        row_count=rows,
        examples=examples or [],
        observed=observed,
        hint=hint,
        tolerated=tolerated,
    )


class FirstTableRefused(RuntimeError):
    """Promotion refused the first table of a workspace: with no champion, nothing is live.
    `decision` is the promotion's (pipelines.promote.Decision)."""

    def __init__(self, model: str, decision) -> None:
        super().__init__(
            f"promotion refused {model} v{decision.challenger}, the first table of this "
            f"workspace: {'; '.join(decision.reasons)}. Nothing is live: no table was published. "
            "The chain's outputs are kept; fix the cause (the reasons above) and rerun `main`, "
            f"or `related-videos publish --version {decision.challenger}` to publish it anyway."
        )
        self.decision = decision


def _plain(value: object) -> object:
    """Examples as JSON-friendly plain values (timestamps as ISO strings)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value
