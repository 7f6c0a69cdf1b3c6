"""The experiment step: the offline evaluation's related lists replayed as a simulated live
experiment in the synthetic world (the paper's Table 1), reported in Markdown, HTML and a plot.

Every method is shown to the same users in the same sessions (simulator/replay.py), with
`experiment.replicates` seeds shared by all methods, plus `experiment.aa_replicates` other seeds
for the baseline (the A/A row). Only the synthetic data set has a world to simulate; its world is
rebuilt from the configuration and must be the one the workspace's data came from. The
simulation is simulator/experiment.py's; this step reads its inputs, tracks and reports.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from models.experiment import LOWER_IS_BETTER, METRICS, excludes_zero, summarize
from pipelines import tracking, workspace
from pipelines.config import Config, ConfigError
from pipelines.data.io import DataFileError, publish_folder, read_table
from simulator import experiment as simulation
from simulator.experiment import AA_ARM
from simulator.replay import slate_matrix
from simulator.synthetic import World

log = logging.getLogger(__name__)
AA_KEY = "aa"  # the A/A arm in MLflow metric names, which allow no brackets
LIST_COLUMNS = ("video_id", "rank", "related_video_id")
HEADERS = {
    "ctr": "clicks",
    "play_time_per_impression": "played time",
    "satisfaction_rate": "satisfaction",
    "dislike_rate": "negative feedback",
    "retention": "{days}-day retention",
}


@dataclass
class Experiment:
    replicates: pd.DataFrame  # arm, replicate, seed, one column per metric, seconds
    summary: pd.DataFrame  # models.experiment.SUMMARY_COLUMNS
    table: pd.DataFrame  # the report's cells: one row per arm, one column per metric
    folder: Path
    arm_seconds: float  # mean wall time of one simulated arm


def experiment_dir(config: Config) -> Path:
    return workspace.reports_dir(config) / "experiment"


def read_method_lists(config: Config) -> tuple[list[str], dict[str, pd.DataFrame], dict]:
    """The offline evaluation's methods, in its order, each method's related lists, and the
    evaluation's summary."""
    folder = workspace.evaluation_dir(config)
    payload = workspace.read_evaluation(config)
    try:
        methods = [str(method) for method in payload["methods"]]
    except (KeyError, TypeError) as error:
        path = folder / workspace.EVALUATION_SUMMARY
        raise DataFileError(f"{path}: no list of methods ({error})") from error
    if payload.get("baseline", config.experiment.baseline) != config.experiment.baseline:
        log.warning(
            "the offline evaluation's baseline is %r; the experiment compares with "
            "experiment.baseline %r",
            payload["baseline"],
            config.experiment.baseline,
        )
    lists = {}
    for method in methods:
        frame = read_table(folder / "lists" / f"{method}.parquet")
        missing = [column for column in LIST_COLUMNS if column not in frame.columns]
        if missing:
            raise DataFileError(f"{folder / 'lists' / method}.parquet: no column {missing[0]!r}")
        lists[method] = frame
    return methods, lists, payload


def rebuild_world(config: Config) -> World:
    """The synthetic world of `config` (seed and size), checked against the workspace's data."""
    if config.data.dataset != "synthetic":
        raise ConfigError(
            f"data.dataset: only the synthetic world can be simulated, not {config.data.dataset!r}"
        )
    world = simulation.rebuild_world(config.synthetic, config.seed)
    workspace.validated_manifest(config)
    videos = read_table(workspace.validated_dir(config) / "videos.parquet")
    if not simulation.same_videos(world, videos):
        raise DataFileError(
            f"{workspace.validated_dir(config)}: the workspace's data was not generated with this "
            f"configuration (seed {config.seed}, synthetic.size {config.synthetic.size}): its "
            "videos differ from the rebuilt world's; generate and validate again, or run with the "
            "seed and size the data was made with"
        )
    return world


def session_rate(config: Config, world: World) -> float:
    """The log's sessions per activity-day, from the truth the generator wrote beside it."""
    path = workspace.raw_dir(config) / "truth" / "users.parquet"
    truth = read_table(path)
    if not simulation.same_users(world, truth):
        raise DataFileError(
            f"{path}: the workspace's data was not generated with this configuration "
            f"(seed {config.seed}, synthetic.size {config.synthetic.size}): its users differ"
        )
    return simulation.session_rate(world, truth)


def check_settings(config: Config, methods: list[str]) -> None:
    settings = config.experiment
    if settings.baseline not in methods:
        raise ConfigError(
            f"experiment.baseline: {settings.baseline!r} is not a method of the offline "
            f"evaluation {methods}"
        )
    if settings.days < 1:
        raise ConfigError(f"experiment.days: {settings.days} is not a positive number of days")
    if settings.replicates < 2:
        raise ConfigError("experiment.replicates: at least 2, for a confidence interval")
    if not 0 <= settings.aa_replicates <= settings.replicates:
        raise ConfigError(
            "experiment.aa_replicates: between 0 and experiment.replicates (each A/A replicate "
            "is paired with a baseline replicate)"
        )
    if not 0 < settings.confidence < 1:
        raise ConfigError(f"experiment.confidence: {settings.confidence} is not in (0, 1)")


def run_experiment(config: Config, progress: bool = True) -> Experiment:
    """Simulate every method of the offline evaluation (and the A/A arm), log the metrics and
    the report to an `experiment` run, write the report to the data set's reports folder."""
    settings = config.experiment
    world = rebuild_world(config)
    methods, lists, evaluation = read_method_lists(config)
    check_settings(config, methods)
    rate = session_rate(config, world)
    video_ids = world.catalog.videos["video_id"].to_numpy()
    slate_size = config.synthetic.slate_size
    try:
        slates = {method: slate_matrix(lists[method], video_ids, slate_size) for method in methods}
    except ValueError as error:
        raise DataFileError(f"{workspace.evaluation_dir(config) / 'lists'}: {error}") from error
    arms = simulation.experiment_arms(
        methods, settings.replicates, settings.aa_replicates, config.seed
    )
    params = {
        "dataset": config.data.dataset,
        "size": config.synthetic.size,
        "seed": config.seed,
        "days": settings.days,
        "replicates": settings.replicates,
        "aa_replicates": settings.aa_replicates,
        "confidence": settings.confidence,
        "baseline": settings.baseline,
        "methods": ",".join(methods),
        "slate_size": slate_size,
        "users": len(world.activity),
        "seeds": f"[{config.seed}, replicate]; A/A: [{config.seed}, replicates + i]",
    }
    tags = {"evaluation_run_id": str(evaluation.get("run_id", ""))}  # the lists' evaluation
    with tracking.step_run("experiment", params, tags):
        started = time.perf_counter()
        replicates = simulation.run_arms(
            world, slates, arms, settings.baseline, settings.days, rate, progress
        )
        summary = summarize(replicates, settings.baseline, settings.confidence)
        arm_order = [*methods, AA_ARM] if settings.aa_replicates else methods
        table = report_cells(summary, arm_order, settings.baseline)
        seconds = time.perf_counter() - started
        arm_seconds = float(replicates["seconds"].mean())
        for arm in arm_order:
            log.info("experiment %-22s %s", arm, " | ".join(table.loc[arm]))

        target = experiment_dir(config)
        with publish_folder(target) as scratch:
            replicates.to_csv(scratch / "replicates.csv", index=False)
            summary.to_csv(scratch / "summary.csv", index=False)
            header = {
                metric: HEADERS[metric].format(days=settings.days) for metric in table.columns
            }
            caption = report_caption(config, len(world.activity), rate)
            (scratch / "experiment.md").write_text(
                markdown_report(table, header, caption, settings.baseline)
            )
            (scratch / "experiment.html").write_text(
                html_report(table, summary, header, caption, settings.baseline)
            )
            plot_changes(summary, arm_order, settings.baseline, header, scratch / "experiment.png")
        aa = summary[summary["arm"] == AA_ARM]
        aa_inside = sum(not excludes_zero(r.change_low, r.change_high) for r in aa.itertuples())
        mlflow.log_metrics(
            {
                **metric_values(summary),
                "aa_inside_interval": aa_inside,
                "sessions_per_activity_day": rate,
                "arm_seconds": arm_seconds,
                "seconds": seconds,
            }
        )
        mlflow.log_artifacts(str(target), artifact_path="experiment")
        log.info(
            "experiment: %d arms (%d methods x %d seeds + %d A/A) in %.1f s (%.2f s an arm); "
            "A/A intervals containing 0: %d of %d -> %s",
            len(arms),
            len(methods),
            settings.replicates,
            settings.aa_replicates,
            seconds,
            arm_seconds,
            aa_inside,
            len(aa),
            target,
        )
        return Experiment(replicates, summary, table, target, arm_seconds)


def metric_values(summary: pd.DataFrame) -> dict[str, float]:
    """MLflow metrics: per arm and metric the mean, and the change (with its interval)."""
    values = {}
    for row in summary.itertuples():
        key = f"{AA_KEY if row.arm == AA_ARM else row.arm}/{row.metric}"
        values[key] = row.mean
        if not np.isnan(row.change_pct):
            values[f"{key}_change_pct"] = row.change_pct
            values[f"{key}_change_low"] = row.change_low
            values[f"{key}_change_high"] = row.change_high
    return {key: float(value) for key, value in values.items() if np.isfinite(value)}


def report_cells(summary: pd.DataFrame, arms: list[str], baseline: str) -> pd.DataFrame:
    """Table 1's cells: the baseline's absolute values with their interval, every other arm's
    change in percent with its interval."""
    cells = {}
    for row in summary.itertuples():
        if row.arm == baseline:
            unit = " s" if row.metric == "play_time_per_impression" else ""
            digits = 1 if unit else 4
            text = f"{row.mean:.{digits}f}{unit} [{row.low:.{digits}f}, {row.high:.{digits}f}]"
        elif np.isnan(row.change_pct):  # the baseline's value was 0: no ratio
            text = "n/a"
        else:
            text = f"{row.change_pct:+.2f}% [{row.change_low:+.2f}, {row.change_high:+.2f}]"
        cells.setdefault(row.arm, {})[row.metric] = text
    return pd.DataFrame.from_dict(cells, orient="index").loc[arms, list(METRICS)]


def report_caption(config: Config, users: int, rate: float) -> str:
    settings = config.experiment
    return (
        f"Simulated live experiment on the synthetic world (seed {config.seed}, size "
        f"{config.synthetic.size}, {users:,} users, {settings.days} days, "
        f"{rate:.3f} sessions per activity-day as in the log). Baseline "
        f"`{settings.baseline}`: absolute values (clicks, likes + shares, dislikes per "
        "recommended impression; seconds played per recommended impression; share of users "
        "still present at the end). Other rows: change against the baseline in percent, mean of "
        f"{settings.replicates} paired replicates (same seeds, common random numbers) with its "
        f"{settings.confidence:.0%} t-interval. The A/A row is the baseline again with "
        f"{settings.aa_replicates} other seeds: its intervals should contain 0. Negative "
        "feedback: lower is better."
    )


def markdown_report(
    table: pd.DataFrame, header: dict[str, str], caption: str, baseline: str
) -> str:
    columns = [header[c] for c in table.columns]
    lines = [
        "# Simulated live experiment",
        "",
        "| method | " + " | ".join(columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for arm, row in table.iterrows():
        name = f"{arm} (baseline)" if arm == baseline else arm
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join([*lines, "", caption, ""])


def html_report(
    table: pd.DataFrame,
    summary: pd.DataFrame,
    header: dict[str, str],
    caption: str,
    baseline: str,
) -> str:
    """The table as HTML; a change whose interval excludes 0 is green when it is an
    improvement and red when it is not."""
    bounds = summary.set_index(["arm", "metric"])
    head = "".join(f"<th>{html.escape(header[c])}</th>" for c in table.columns)
    body = []
    for arm, row in table.iterrows():
        cells = []
        for metric, text in row.items():
            low, high = bounds.loc[(arm, metric), ["change_low", "change_high"]]
            style = ""
            if arm != baseline and excludes_zero(low, high):
                better = (low > 0) != (metric in LOWER_IS_BETTER)
                style = ' class="better"' if better else ' class="worse"'
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        name = html.escape(arm) + (" (baseline)" if arm == baseline else "")
        body.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>Simulated live experiment"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{text-align:left}"
        ".better{background:#d4f4d4}.worse{background:#f8d4d4}p{max-width:60em}</style></head>"
        f"<body><h1>Simulated live experiment</h1><table><tr><th>method</th>{head}</tr>"
        f"{''.join(body)}</table><p>{html.escape(caption)}</p>"
        "<img src='experiment.png' alt='change against the baseline'></body></html>\n"
    )


def plot_changes(
    summary: pd.DataFrame, arms: list[str], baseline: str, header: dict[str, str], path: Path
) -> None:
    """Per metric, each arm's change against the baseline with its interval as error bars."""
    others = [arm for arm in arms if arm != baseline]
    figure = Figure(figsize=(4 * len(METRICS), 1.5 + 0.35 * len(others)))
    panels = figure.subplots(1, len(METRICS), sharey=True)
    y = np.arange(len(others))
    for axes, metric in zip(panels, METRICS, strict=True):
        rows = summary[summary["metric"] == metric].set_index("arm").loc[others]
        change = rows["change_pct"].to_numpy()
        error = np.abs(np.vstack([change - rows["change_low"], rows["change_high"] - change]))
        aa = np.array([arm == AA_ARM for arm in others])
        for points, colour in ((~aa, "#4477aa"), (aa, "#999999")):
            axes.errorbar(
                change[points],
                y[points],
                xerr=np.nan_to_num(error[:, points]),
                fmt="o",
                color=colour,
                capsize=3,
            )
        axes.axvline(0.0, color="#888888", linewidth=1)
        axes.set(title=header[metric], xlabel=f"% vs {baseline}")
    panels[0].set(yticks=y, yticklabels=others)
    panels[0].invert_yaxis()  # shared: the first arm on top in every panel
    figure.tight_layout()
    figure.savefig(path, dpi=100)
