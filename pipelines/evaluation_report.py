"""The offline evaluation's report: the paper-style table (the baseline's values, every other
method's change against it in percent) in Markdown and HTML, and two matplotlib plots.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

OBJECTIVES = ("click", "play_time", "like", "share")
# The headline columns, in the order of the paper's Table 1 (engagement, satisfaction,
# dissatisfaction), then relevance, coverage and the cold-video slice.
HEADLINE = (
    ("recall_click", "clicks R@N"),
    ("recall_play_time", "played ≥ half R@N"),
    ("recall_like", "likes R@N"),
    ("recall_share", "shares R@N"),
    ("dislike_rate", "dislike rate ↓"),
    ("ndcg_click", "clicks NDCG@N"),
    ("ndcg_play_time", "played NDCG@N"),
    ("relevance_share", "relevant share"),
    ("coverage", "coverage"),
    ("recall_click_cold", "cold: clicks R@N"),
    ("recall_play_time_cold", "cold: played R@N"),
)
DETAIL = (
    *(f"ndcg_{o}" for o in OBJECTIVES[2:]),
    "relevance_mean",
    *(f"ndcg_{o}_cold" for o in ("click", "play_time")),
)
DESCRIPTIONS = {
    "popularity": "the most clicked videos of the training days, the same for every source",
    "content": "stage 1 alone: candidates by content cosine",
    "item-cf": "item-based CF: cosine of co-click counts",
    "als-click": "ALS on every click, nearest neighbours, no relevance gate (the baseline)",
    "als-play_time": "ALS on every half-watched play, no gate",
    "als-like": "ALS on every like, no gate",
    "als-share": "ALS on every share, no gate",
    "als-dislike": "ALS on every dislike, least similar first (the paper's rule), no gate",
    "two-tower-click": "two-tower on every click, nearest neighbours, no gate",
    "gated-popularity": "the candidates ordered by their training clicks (a bar for gated methods)",
    "content-popularity": "the candidates by content cosine, ties by training clicks (a bar)",
    "gated-cooccurrence": "the candidates by co-click Jaccard with the source (SAR; a bar)",
    "multi-task": "the full method: gate, coordinating network, ALS + two-tower calibrated, "
    "weights chosen on held-out training days",
    "no-cn": "full method without the coordinating network (every positive trains)",
    "no-two-tower": "full method with ALS only",
    "no-gate": "full method ranking every model's neighbours instead of the candidates",
    "no-learned-weights": "full method with every objective weight 1",
}
# The score diagnostics of the merged methods, with their labels.
DIAGNOSTICS = (
    ("tied_list_share", "lists of one tied score"),
    ("distinct_scores_per_list_mean", "distinct scores per list"),
    ("rows_at_max_share", "rows at the maximum score"),
)


def write_report(
    table: pd.DataFrame,
    change: pd.DataFrame,
    summary: Mapping,
    threshold: float,
    folder: Path,
) -> Path:
    """report.md, report.html, change_by_objective.png and relevance_vs_engagement.png in
    `folder`; returns the HTML report's path."""
    folder = Path(folder)
    baseline = summary["baseline"]
    lower = set(change.attrs.get("lower_is_better", ()))
    _plot_change(change, baseline, lower, folder / "change_by_objective.png")
    _plot_relevance(table, baseline, threshold, folder / "relevance_vs_engagement.png")
    headline = [(key, label) for key, label in HEADLINE if key in table]
    (folder / "report.md").write_text(_markdown(table, change, summary, headline, threshold))
    path = folder / "report.html"
    path.write_text(_html(table, change, summary, headline, lower, threshold))
    return path


def _cell(method: str, baseline: str, key: str, table, change) -> str:
    if method == baseline:
        return _value(table.loc[method, key])
    value = change.loc[method, key]
    return "n/a" if not math.isfinite(value) else f"{value:+.1f}%"


def _value(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4f}"


def _intro(summary: Mapping, threshold: float) -> list[str]:
    return [
        f"Test period: from {summary['split']} ({summary['test_events']:,} events); "
        f"every method trained on the {summary['training_events']:,} events before it.",
        f"N = {summary['at']} (lists hold {summary['top_n']}). "
        "R@N: recall at N of the test positives of each source. "
        "Dislike rate: share of the recommended pairs that test users were shown that they "
        f"disliked (lower is better). Relevant share: pairs with content cosine ≥ {threshold}. "
        f"Cold: sources with at most the configured training events ({summary['cold_videos']:,} "
        "videos).",
        "Test sources with positives: "
        + ", ".join(f"{k} {v:,}" for k, v in summary.get("test_sources", {}).items())
        + ".",
        f"The baseline row ({summary['baseline']}) shows values; every other row the change "
        "against it in percent (n/a where the baseline's value is 0).",
    ]


def _markdown(table, change, summary, headline, threshold) -> str:
    baseline = summary["baseline"]
    lines = ["# Offline evaluation", "", *(f"{line}  " for line in _intro(summary, threshold))]
    lines += ["", "| method | " + " | ".join(label for _, label in headline) + " |"]
    lines.append("| --- " * (len(headline) + 1) + "|")
    for method in table.index:
        cells = [_cell(method, baseline, key, table, change) for key, _ in headline]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "## Every metric (values)", ""]
    keys = [key for key, _ in headline] + [key for key in DETAIL if key in table]
    lines.append("| method | " + " | ".join(keys) + " |")
    lines.append("| --- " * (len(keys) + 1) + "|")
    for method in table.index:
        cells = [_value(table.loc[method, key]) for key in keys]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "## The full method against each bar and ablation", ""]
    lines += _comparisons_markdown(summary)
    lines += ["", "## Score diagnostics (merged methods)", ""]
    lines += _diagnostics_markdown(summary)
    lines += ["", "## Methods", ""]
    lines += [f"- **{m}**: {DESCRIPTIONS.get(m, '')}" for m in table.index]
    lines += [
        "",
        "![change by objective](change_by_objective.png)",
        "",
        "![relevance against engagement](relevance_vs_engagement.png)",
        "",
    ]
    return "\n".join(lines)


COMPARED = (
    ("recall_click", "clicks R@N"),
    ("recall_play_time", "played ≥ half R@N"),
    ("ndcg_click", "clicks NDCG@N"),
    ("ndcg_play_time", "played NDCG@N"),
    ("dislike_rate", "dislike rate ↓"),
)
COMPARISON_NOTE = (
    "Full method minus the other, with a 95% interval from a paired bootstrap over the test "
    "sources. 'better' / 'worse': the interval excludes 0 (for the dislike rate, lower is "
    "better); '~': not distinguishable on this test set."
)


def _comparison_rows(summary: Mapping) -> tuple[list[str], list[list[str]]]:
    comparisons = summary.get("comparisons") or {}
    if not comparisons:
        return [], []
    header = ["full method against", *(label for _, label in COMPARED)]
    rows = []
    for method, figures in comparisons.items():
        cells = [method]
        for key, _ in COMPARED:
            cells.append(_difference(figures.get(key), lower=key == "dislike_rate"))
        rows.append(cells)
    return header, rows


def _difference(figures: Mapping | None, lower: bool) -> str:
    if not figures or figures.get("difference") is None:
        return "n/a"
    value, low, high = figures["difference"], figures["low"], figures["high"]
    if not all(isinstance(v, float | int) and math.isfinite(v) for v in (value, low, high)):
        return "n/a"
    verdict = "~"
    if low > 0 or high < 0:
        verdict = "better" if (low > 0) != lower else "worse"
    return f"{value:+.4f} [{low:+.4f}, {high:+.4f}] {verdict}"


def _comparisons_markdown(summary: Mapping) -> list[str]:
    header, rows = _comparison_rows(summary)
    if not header:
        return ["(the full method was not evaluated)"]
    lines = [COMPARISON_NOTE, "", "| " + " | ".join(header) + " |", "| --- " * len(header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _comparisons_html(summary: Mapping) -> str:
    header, rows = _comparison_rows(summary)
    if not header:
        return "<p>(the full method was not evaluated)</p>"
    return f"<p>{html.escape(COMPARISON_NOTE)}</p>{_html_table(header, rows)}"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _diagnostics_rows(summary: Mapping) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per merged method its tie figures, mean contribution and share of
    reasons per objective."""
    diagnostics = summary.get("diagnostics") or {}
    if not diagnostics:
        return [], []
    names = sorted(
        {
            key.removeprefix("reason_share_")
            for figures in diagnostics.values()
            for key in figures
            if key.startswith("reason_share_")
        }
    )
    header = ["method", *(label for _, label in DIAGNOSTICS)]
    header += [f"reasons: {name}" for name in names]
    rows = []
    for method, figures in diagnostics.items():
        cells = [method]
        for key, _ in DIAGNOSTICS:
            value = figures.get(key)
            cells.append("n/a" if value is None else f"{value:.3f}")
        for name in names:
            value = figures.get(f"reason_share_{name}")
            cells.append("n/a" if value is None else f"{100 * value:.1f}%")
        rows.append(cells)
    return header, rows


def _diagnostics_markdown(summary: Mapping) -> list[str]:
    header, rows = _diagnostics_rows(summary)
    if not header:
        return ["(no merged method evaluated)"]
    lines = ["| " + " | ".join(header) + " |", "| --- " * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    fusion = summary.get("fusion")
    if fusion:
        weights = ", ".join(f"{k} {v:.3f}" for k, v in fusion["weights"]["weights"].items())
        lines += ["", f"Weighting of the full method: **{fusion['weighting']}** ({weights})."]
        for option, figures in fusion.get("validation", {}).items():
            shown = ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if v == v)
            lines.append(f"- validation on held-out training days, {option}: {shown}")
        for name, aucs in fusion.get("two_tower", {}).items():
            probe = " (a probe, not fitted in full: evaluation.two_tower_probe)"
            lines.append(
                f"- two-tower-{name}{probe if aucs.get('probe') else ''}: validation AUC "
                f"{aucs['with']:.4f} with it, {aucs['without']:.4f} without; "
                f"{'kept' if aucs.get('kept') else 'left out'}"
            )
    risk = (fusion or {}).get("risk") or {}
    if risk:
        validation = ", ".join(
            f"{k} {v:.4f}" for k, v in risk.items() if k.startswith(("recall", "ndcg"))
        )
        lines.append(
            f"- dislike risk guard: penalty {risk['penalty']:g}; the validation lists' mean risk "
            f"(the candidates' smoothed dislike rate) {risk['risk_before']:.5f} unguarded, "
            f"{risk['risk_after']:.5f} guarded, the bar's {risk['bar_risk']:.5f}"
            + (f"; guarded validation: {validation}" if validation else "")
        )
    fills = (fusion or {}).get("fills") or {}
    if fills:
        lines.append(
            f"- fills of short lists: {'by score' if fills['kept'] else 'after the gated pairs'} "
            f"(ranked by score they move the validation lists by {fills['gain']:+.4f}, standard "
            f"error {fills['error']:.4f}, against the gated pairs first)"
        )
    routing = summary.get("routing")
    if routing and "gain" in routing:
        lines.append(
            f"- coordinating network: {'kept' if routing['kept'] else 'left out'} (its routing "
            f"moves the validation lists by {routing['gain']:+.4f}, standard error "
            f"{routing['error']:.4f}, against models learning from every positive)"
        )
    elif routing:
        lines.append(
            f"- coordinating network: {'kept' if routing['kept'] else 'left out'} "
            f"(training.routing: {routing['mode']})"
        )
    return lines


def _html(table, change, summary, headline, lower, threshold) -> str:
    baseline = summary["baseline"]
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in headline)
    rows = []
    for method in table.index:
        cells = []
        for key, _ in headline:
            text = _cell(method, baseline, key, table, change)
            value = change.loc[method, key]
            better = None if method == baseline or not math.isfinite(value) else value > 0
            if better is not None and key in lower:
                better = not better
            css = "" if better is None or abs(value) < 0.05 else ("up" if better else "down")
            cells.append(f'<td class="{css}">{html.escape(text)}</td>')
        title = html.escape(DESCRIPTIONS.get(method, ""))
        rows.append(f'<tr><th title="{title}">{html.escape(method)}</th>{"".join(cells)}</tr>')
    intro = "".join(f"<p>{html.escape(line)}</p>" for line in _intro(summary, threshold))
    detail = table.to_html(float_format=lambda v: f"{v:.4f}", na_rep="n/a")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Offline evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td.up {{ background: #d8f0d8; }} td.down {{ background: #f6d6d6; }}
</style></head><body>
<h1>Offline evaluation</h1>{intro}
<p>Green: better than the baseline; red: worse.</p>
<table><tr><th>method</th>{head}</tr>{"".join(rows)}</table>
<img src="change_by_objective.png" alt="change by objective" width="900">
<img src="relevance_vs_engagement.png" alt="relevance against engagement" width="600">
<h2>Every metric (values)</h2>{detail}
<h2>The full method against each bar and ablation</h2>{_comparisons_html(summary)}
<h2>Score diagnostics (merged methods)</h2>{_diagnostics_html(summary)}
</body></html>
"""


def _diagnostics_html(summary: Mapping) -> str:
    header, rows = _diagnostics_rows(summary)
    if not header:
        return "<p>(no merged method evaluated)</p>"
    fusion = summary.get("fusion")
    note = (
        f"<p>Weighting of the full method: {html.escape(fusion['weighting'])}</p>" if fusion else ""
    )
    return f"{_html_table(header, rows)}{note}"


def _plot_change(change: pd.DataFrame, baseline: str, lower: set, path: Path) -> None:
    keys = [k for k in (*(f"recall_{o}" for o in OBJECTIVES), "dislike_rate") if k in change]
    methods = [m for m in change.index if m != baseline]
    figure, axis = plt.subplots(figsize=(12, 0.45 * len(methods) * len(keys) / 3 + 2))
    height = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        values = change.loc[methods, key].clip(-100, 300).fillna(0.0)
        label = key.replace("recall_", "recall ") + (" (lower is better)" if key in lower else "")
        positions = [m + i * height for m in range(len(methods))]
        axis.barh(positions, values, height=height, label=label)
    axis.set_yticks([m + 0.4 - height / 2 for m in range(len(methods))], methods)
    axis.invert_yaxis()
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_xlabel(f"change against {baseline}, % (clipped to [-100, 300])")
    axis.set_title("Per-objective change against the baseline")
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_relevance(table: pd.DataFrame, baseline: str, threshold: float, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 6))
    x, y = table["relevance_share"], table["recall_click"]
    axis.scatter(x, y, c=["tab:red" if m == baseline else "tab:blue" for m in table.index])
    for method in table.index:
        axis.annotate(
            method, (x[method], y[method]), fontsize=8, xytext=(3, 3), textcoords="offset points"
        )
    axis.set_xlabel(f"relevance: share of listed pairs with content cosine ≥ {threshold}")
    axis.set_ylabel("engagement: recall@N of test clicks")
    axis.set_title("Relevance against engagement")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
