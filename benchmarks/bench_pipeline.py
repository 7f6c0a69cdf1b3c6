"""Benchmark of the whole chain (`related-videos main`) on synthetic sizes: wall time, peak memory,
each step's share, and the orchestration overhead (Feast, MLflow, Great Expectations, file I/O)
as a share of the total. One fresh process and one fresh workspace per size.

Run: `make bench-pipeline`, or `python -m benchmarks.bench_pipeline --sizes toy,small,default`.
`--set` overrides pass through (e.g. `--set synthetic.sizes.large.events=1000000`); `--until STEP`
runs the chain only up to that step (for sizes whose full chain does not fit the time at hand);
`--timeout` stops a size after that many seconds and reports the steps that finished.

Step seconds are the start and end times of the steps' MLflow runs (direct children of the
pipeline run). Orchestration shares come from a wall-clock stack sampler on the main thread
(benchmarks/profile_sampler.py). Peak memory: the worker's peak resident set (VmHWM), imports
included. Prints figures and a Markdown table; asserts no timing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.memory import memory_mb
from benchmarks.profile_sampler import CATEGORIES, ORCHESTRATION, Sampler, shares, top_sites

STEP_ORDER = (
    "generate", "validate", "features", "candidates", "train", "merge", "evaluate", "promote",
    "publish",
)  # fmt: skip


class TimeUp(BaseException):
    """Raised in the worker's main thread when the parent stops it (SIGTERM)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="toy,small,default", help="presets, comma-separated")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=V")
    parser.add_argument("--until", help="last step of the chain to run (default: all of main)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per size (3600)")
    parser.add_argument("--keep", help="keep the workspaces under this folder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _work(args)
        return
    sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(args.keep or tmp)
        for size in sizes:
            results.append(_measure(size, root / size, args))
            _print_size(results[-1])
    _report(results, args)


def _measure(size: str, folder: Path, args: argparse.Namespace) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "bench-report.json"
    command = [
        sys.executable, "-m", "benchmarks.bench_pipeline", "--worker", size,
        "--report", str(report), *[f"--set={item}" for item in args.overrides],
    ]  # fmt: skip
    if args.until:
        command += ["--until", args.until]
    print(f"running {size} in {folder} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    worker = subprocess.Popen(command, cwd=folder, env=environment, stdout=subprocess.DEVNULL)
    timed_out = False
    try:
        worker.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=120)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    result = json.loads(report.read_text()) if report.exists() else {"size": size}
    result.update(
        size=size,
        process_seconds=time.perf_counter() - started,
        exit_code=worker.returncode,
        timed_out=timed_out,
    )
    result["steps"] = _step_seconds(folder / "workspace" / "mlflow.db")
    return result


def _work(args: argparse.Namespace) -> None:
    """In this fresh process: the chain on one size in ./workspace, sampled; the report as JSON."""
    import pipelines.cli as cli  # what the `related-videos` script imports first

    report: dict = {"size": args.worker, "started": time.time()}
    signal.signal(signal.SIGTERM, _time_up)
    sampler = Sampler().start()
    argv = ["--workspace", "workspace", "--size", args.worker]
    argv += [part for item in args.overrides for part in ("--set", item)]
    try:
        if args.until:
            report["exit_code"] = _run_until(cli, argv, args.until)
        else:
            report["exit_code"] = cli.main([*argv, "main"])
    except TimeUp:
        report["timed_out_in_worker"] = True
    report["ended"] = time.time()
    report["samples"] = sampler.stop()
    report["peak_rss_mb"] = memory_mb("VmHWM")
    report["import_to_start_seconds"] = report["started"] - _process_start()
    report.update(_world(args))
    Path(args.report).write_text(json.dumps(report))


def _run_until(cli, argv: list[str], last: str) -> int:
    """The chain up to `last` under one pipeline run, set up as `related-videos main` does."""
    import logging
    import warnings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for category, message in cli.KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mlflow

    from pipelines import tracking
    from pipelines.config import load_config
    from pipelines.main import run_steps, steps_until

    parsed = cli.build_parser().parse_args([*argv, "main"])
    config = load_config(parsed.config, [*parsed.overrides, f"paths.workspace={parsed.workspace}",
                                         f"synthetic.size={parsed.size}"])  # fmt: skip
    for name in cli.QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    tracking.configure_for(config)
    with mlflow.start_run(run_name="pipeline"):
        run_steps(config, steps_until(config, last))
    return 0


def _world(args: argparse.Namespace) -> dict:
    """The preset's numbers after the overrides, and the events actually generated."""
    from pipelines.config import load_config

    config = load_config(overrides=[*args.overrides, f"synthetic.size={args.worker}"])
    preset = config.synthetic.sizes[args.worker]
    world = {"videos": preset.videos, "users": preset.users, "events_asked": preset.events}
    events = Path("workspace/data/synthetic/raw/events.parquet")
    if events.exists():
        import pyarrow.parquet as pq

        world["events"] = pq.ParquetFile(events).metadata.num_rows
    return world


def _time_up(signum, frame) -> None:
    raise TimeUp()


def _step_seconds(database: Path) -> list[dict]:
    """Each finished direct child of the pipeline run: name, start and end (epoch seconds)."""
    if not database.exists():
        return []
    import sqlite3

    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT r.run_uuid, r.name, r.start_time, r.end_time, r.status, t.value FROM runs r "
            "LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId'"
        ).fetchall()
    parents = {uuid for uuid, name, *_ in rows if name == "pipeline"}
    steps = [
        {"step": name, "start": start / 1000, "end": (end or start) / 1000, "status": status}
        for uuid, name, start, end, status, parent in rows
        if parent in parents
    ]
    return sorted(steps, key=lambda step: step["start"])


def _print_size(result: dict) -> None:
    steps = result["steps"]
    total = result.get("ended", 0) - result.get("started", 0)
    print(
        f"\n## {result['size']}: {result.get('events', result.get('events_asked', 0)):,} events, "
        f"{result.get('videos', 0):,} videos, {result.get('users', 0):,} users"
    )
    state = "timed out" if result["timed_out"] else f"exit code {result['exit_code']}"
    print(
        f"chain {total:.1f} s (process {result['process_seconds']:.1f} s, of which "
        f"{result.get('import_to_start_seconds', 0):.1f} s before the chain started), {state}, "
        f"peak RSS {result.get('peak_rss_mb', 0):,.0f} MB"
    )
    samples = result.get("samples", [])
    print("| step | seconds | share | " + " | ".join(CATEGORIES) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in CATEGORIES) + " |")
    for step in steps:
        seconds = step["end"] - step["start"]
        spent = shares(samples, step["start"], step["end"])
        sampled = sum(spent.values()) or 1.0
        print(
            f"| {step['step']} | {seconds:.1f} | {seconds / max(total, 1e-9):.1%} | "
            + " | ".join(f"{spent[c] / sampled:.0%}" for c in CATEGORIES)
            + " |"
        )
    whole = shares(samples)
    sampled = sum(whole.values()) or 1.0
    print(
        f"| whole chain | {total:.1f} | 100% | "
        + " | ".join(f"{whole[c] / sampled:.0%}" for c in CATEGORIES)
        + " |"
    )
    orchestration = sum(whole[c] for c in ORCHESTRATION) / sampled
    outside = total - sum(step["end"] - step["start"] for step in steps)
    print(
        f"orchestration (feast + mlflow + great_expectations + io): {orchestration:.1%}; "
        f"outside the step runs (imports, setup, between steps): {outside:.1f} s"
    )
    print("\nwhere the time went (innermost project frame > library below it):")
    for site, category, seconds in top_sites(samples):
        print(f"  {seconds:8.1f} s  {seconds / sampled:6.1%}  [{category}] {site}")


def _report(results: list[dict], args: argparse.Namespace) -> None:
    print("\n# Scale curve\n")
    print(
        "| size | events | videos | users | chain s | peak RSS MB | "
        + " | ".join(STEP_ORDER)
        + " | orchestration | state |"
    )
    print("| " + " | ".join("---" for _ in range(8 + len(STEP_ORDER))) + " |")
    for result in results:
        by_step = {}
        for step in result["steps"]:
            by_step[step["step"]] = by_step.get(step["step"], 0.0) + step["end"] - step["start"]
        whole = shares(result.get("samples", []))
        sampled = sum(whole.values()) or 1.0
        state = "timed out" if result["timed_out"] else f"exit {result['exit_code']}"
        if args.until:
            state += f", until {args.until}"
        print(
            f"| {result['size']} | {result.get('events', 0):,} | {result.get('videos', 0):,} | "
            f"{result.get('users', 0):,} | {result.get('ended', 0) - result.get('started', 0):.0f}"
            f" | {result.get('peak_rss_mb', 0):,.0f} | "
            + " | ".join(f"{by_step[s]:.1f}" if s in by_step else "-" for s in STEP_ORDER)
            + f" | {sum(whole[c] for c in ORCHESTRATION) / sampled:.1%} | {state} |"
        )
    if args.overrides:
        print(f"\noverrides: {' '.join(args.overrides)}")


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


if __name__ == "__main__":
    main()
