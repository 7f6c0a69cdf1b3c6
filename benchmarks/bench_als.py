"""Benchmark of the ALS step against its anchors: our train step's ALS (`_train_als`: the MLflow
run, final training loss, held-out AUC, the vectors written) and `models.als.fit_als` (interaction
matrix from the events, then the fit) against a bare `implicit` fit on the same CSR matrix, and
against Spark MLlib's ALS in local mode on the same cells. One process per method.

The data: one objective's positives (all of them, without the coordinating network's routing)
from the synthetic world at a preset, split off a held-out share as the train step does.

Run: `make bench-als`, or `python -m benchmarks.bench_als --size default --objective click`.
Prints figures and a Markdown table; asserts no timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.memory import memory_mb, reset_peak

METHODS = ("ours-step", "ours-fit", "implicit", "implicit-loss", "spark", "paired")
PAIRED = ("ours-step", "implicit")  # the goal's two sides, alternated in one process
LABELS = {
    "ours-step": "ours: train step's _train_als (MLflow run, final loss, AUC, vectors)",
    "ours-fit": "ours: models.als.fit_als (matrix from the events + fit, final loss)",
    "implicit": "bare implicit AlternatingLeastSquares.fit on the CSR",
    "implicit-loss": "bare implicit, calculate_training_loss=True (loss every iteration)",
    "spark": "Spark MLlib ALS, local[2], on the same cells",
    "paired": "ours: train step's _train_als, alternated with the bare fit in one process",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", help="synthetic preset (default)")
    parser.add_argument("--objective", default="click", help="objective name (click)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=V")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="fits per method (3)")
    parser.add_argument("--spark-repeat", type=int, default=2, help="fits for Spark (2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds over the methods, interleaved, each method in a fresh process per round: "
        "a shared machine's drift hits every method alike (3; Spark runs in the first only)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _work(args.worker, Path(args.folder), args)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    _compare(args, methods)


def _config(args: argparse.Namespace):
    from pipelines.config import load_config

    return load_config(overrides=[*args.overrides, f"synthetic.size={args.size}"])


def _compare(args: argparse.Namespace, methods: list[str]) -> None:
    from models.als import interaction_matrix
    from models.objectives import matrix_values
    from simulator.synthetic import generate

    config = _config(args)
    objective = next(o for o in config.objectives if o.name == args.objective)
    started = time.perf_counter()
    events = generate(config.synthetic, config.seed).events
    positives = events[events[objective.label].astype(bool)].reset_index(drop=True)
    rng = np.random.default_rng(config.seed)
    holdout = rng.random(len(positives)) < config.training.holdout_share
    train = positives[~holdout]
    cells = pd.DataFrame(
        {
            "user_id": train["user_id"].to_numpy(),
            "video_id": train["video_id"].to_numpy(),
            "value": matrix_values(train, objective.value).to_numpy(),
        }
    )
    matrix, _, video_ids = interaction_matrix(cells)
    print(
        f"# ALS, objective {objective.name}, synthetic {args.size}\n\n"
        f"{len(events):,} events, {len(positives):,} positives ({holdout.sum():,} held out); "
        f"matrix {matrix.shape[0]:,} users x {matrix.shape[1]:,} videos, {matrix.nnz:,} cells; "
        f"rank {objective.als.rank}, {objective.als.max_iter} iterations, "
        f"reg {objective.als.reg_param}, alpha {objective.als.alpha}; "
        f"data {time.perf_counter() - started:.1f} s\n"
        f"one process per method and round, {args.rounds} rounds interleaved, "
        f"OPENBLAS_NUM_THREADS=1, implicit on all cores, Spark local[2]; best and median of "
        f"every fit\n",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-als-") as tmp:
        folder = Path(tmp)
        positives.to_parquet(folder / "positives.parquet")
        np.save(folder / "holdout.npy", holdout)
        sp.save_npz(folder / "matrix.npz", matrix, compressed=False)
        environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        for round_number, method in (
            (r, m) for r in range(args.rounds) for m in methods if r == 0 or m != "spark"
        ):
            print(f"round {round_number + 1}: running {method} ...", file=sys.stderr, flush=True)
            completed = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_als", "--worker", method,
                 "--folder", str(folder), "--size", args.size, "--objective", args.objective,
                 "--repeat", str(args.repeat), "--spark-repeat", str(args.spark_repeat),
                 *[f"--set={item}" for item in args.overrides]],
                check=False, env=environment,
            )  # fmt: skip
            report = folder / f"{method}.json"
            if completed.returncode or not report.exists():
                results[method] = {"error": f"exit code {completed.returncode}"}
                continue
            found = json.loads(report.read_text())
            report.unlink()
            earlier = results.get(method, {"seconds": [], "peak_mb": 0.0})
            if "error" in earlier:
                continue
            found["seconds"] = earlier["seconds"] + found["seconds"]
            if "pairs" in found:
                found["pairs"] = earlier.get("pairs", []) + found["pairs"]
            found["peak_mb"] = max(earlier["peak_mb"], found["peak_mb"])
            results[method] = found
            factors = folder / f"{method}.npy"
            if factors.exists():
                results[method]["factors"] = np.load(factors)
        _report(results, methods, video_ids)


def _work(method: str, folder: Path, args: argparse.Namespace) -> None:
    """One method in this fresh process, `repeat` times; seconds, peak memory, item factors.
    `paired`: the step and the bare fit alternately in this one process, `repeat` of each."""
    config = _config(args)
    objective = next(o for o in config.objectives if o.name == args.objective)
    report: dict = {"seconds": [], "note": ""}
    names = PAIRED if method == "paired" else (method,)
    runs = {name: _runner(name, config, objective, folder, report) for name in names}
    reset_peak()  # the set-up above (data read, sessions started) is not the method's memory
    baseline = memory_mb("VmRSS")
    factors = None
    if method == "paired":
        report["pairs"] = []
        for i in range(args.repeat):
            seconds = {}
            for name in PAIRED if i % 2 == 0 else PAIRED[::-1]:  # each goes first half the time
                started = time.perf_counter()
                runs[name]()
                seconds[name] = time.perf_counter() - started
            report["pairs"].append([seconds[name] for name in PAIRED])
        report["seconds"] = [pair[0] for pair in report["pairs"]]
    else:
        for _ in range(args.spark_repeat if method == "spark" else args.repeat):
            started = time.perf_counter()
            factors = runs[method]()
            report["seconds"].append(time.perf_counter() - started)
    report["peak_mb"] = memory_mb("VmHWM") - baseline
    if factors is not None:
        np.save(folder / f"{method}.npy", np.asarray(factors, dtype=np.float32))
    (folder / f"{method}.json").write_text(json.dumps(report))


def _runner(method: str, config, objective, folder: Path, report: dict):
    """The timed call of one method (set up here, outside the clock): it returns the item
    factors, or None where the method writes them itself."""
    from threadpoolctl import threadpool_limits

    params = objective.als
    matrix = sp.load_npz(folder / "matrix.npz").tocsr()
    positives = pd.read_parquet(folder / "positives.parquet")
    holdout = np.load(folder / "holdout.npy")
    if method == "ours-step":
        return _ours_step(config, objective, positives, holdout, folder, report)
    if method == "ours-fit":
        from models.als import AlsParams, fit_als
        from models.objectives import matrix_values

        train = positives[~holdout]
        cells = pd.DataFrame(
            {
                "user_id": train["user_id"].to_numpy(),
                "video_id": train["video_id"].to_numpy(),
                "value": matrix_values(train, objective.value).to_numpy(),
            }
        )
        als = AlsParams(**dataclasses.asdict(params))

        def run():
            with threadpool_limits(1, "blas"):
                model = fit_als(cells, als, "implicit", seed=config.seed,
                                progress=lambda *_: None, calculate_training_loss=True)  # fmt: skip
            return model.item_factors

        return run
    if method in ("implicit", "implicit-loss"):
        from implicit.cpu.als import AlternatingLeastSquares

        def run():
            model = AlternatingLeastSquares(
                factors=params.rank, iterations=params.max_iter, regularization=params.reg_param,
                alpha=params.alpha, random_state=config.seed,
                calculate_training_loss=method == "implicit-loss",
            )  # fmt: skip
            with threadpool_limits(1, "blas"):
                model.fit(matrix, show_progress=False)
            return np.asarray(model.item_factors)

        return run
    return _spark(matrix, params, config.seed, report)


def _ours_step(config, objective, positives, holdout, folder: Path, report: dict):
    """`_train_als` as the train step calls it, in an MLflow run on a scratch SQLite store
    (created, and the parent run started, before the clock starts); nothing registered. The ids
    come encoded as the step gets them: `TrainingSet.codes` encodes a training set's ids once for
    the ALS of every objective (0.1 s for 1M events), so that is done before the clock too."""
    import mlflow

    from pipelines import tracking
    from pipelines.stage2 import IdCodes, _train_als

    tracking.configure(folder / "mlflow", "bench-als")
    mlflow.start_run(run_name="bench")
    codes = IdCodes.of(positives)
    out = folder / "ours-step-vectors"
    out.mkdir(exist_ok=True)
    report["note"] = "includes the MLflow run, final training loss, held-out AUC, vectors written"

    def run():
        _train_als(config, objective, positives, holdout, codes, out, None, None, lambda v: {})
        return None

    return run


def _spark(matrix: sp.csr_matrix, params, seed: int, report: dict):
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    started = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]").appName("bench-als")
        .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g").getOrCreate()
    )  # fmt: skip
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="bench-als-spark-"))
    report["session_seconds"] = time.perf_counter() - started
    cells = matrix.tocoo()
    ratings = pd.DataFrame(
        {"user": cells.row.astype(np.int32), "item": cells.col.astype(np.int32),
         "rating": cells.data.astype(np.float32)}
    )  # fmt: skip
    report["note"] = (
        f"session start {report['session_seconds']:.1f} s not included; each fit: DataFrame from "
        "the cells, fit with 2 blocks each way (as models.als does locally), factors collected"
    )

    def run():
        als = ALS(
            rank=params.rank, maxIter=params.max_iter, regParam=params.reg_param,
            alpha=params.alpha, implicitPrefs=True, seed=seed, userCol="user", itemCol="item",
            ratingCol="rating", numUserBlocks=2, numItemBlocks=2,
        )  # fmt: skip
        fitted = als.fit(spark.createDataFrame(ratings))
        frame = fitted.itemFactors.toPandas()
        out = np.zeros((matrix.shape[1], params.rank), dtype=np.float32)
        out[frame["id"].to_numpy()] = np.stack(frame["features"].to_numpy())
        return out

    return run


def _paired_summary(pairs: list[list[float]]) -> str:
    """The step against the bare fit when both ran alternately in the same processes: the same
    drift hits both, so the ratio of each pair is the cleanest figure a shared machine gives."""
    step, bare = np.array(pairs).T
    ratios = step / bare
    return (
        f"paired, {len(pairs)} pairs (step s, bare s): "
        + " ".join(f"({a:.2f}, {b:.2f})" for a, b in pairs)
        + f"; best step / best bare {step.min() / bare.min():.3f}x; median of the pairs' ratios "
        f"{np.median(ratios):.3f}x (range {ratios.min():.3f} to {ratios.max():.3f}); step minus "
        f"bare, median {np.median(step - bare):+.3f} s"
    )


def _report(results: dict, methods: list[str], video_ids: np.ndarray) -> None:
    from models.als import neighbour_overlap
    from models.vectors import ItemVectors

    bare = results.get("implicit", {})
    reference = min(bare["seconds"]) if "seconds" in bare else None
    print("| method | best s | median s | x bare implicit (best) | peak MB | top-10 overlap |")
    print("| --- | --- | --- | --- | --- | --- |")
    notes = []
    for method in methods:
        result = results[method]
        if "error" in result:
            print(f"| {LABELS[method]} | - | - | - | - | {result['error']} |")
            continue
        best, median = min(result["seconds"]), statistics.median(result["seconds"])
        ratio = f"{best / reference:.2f}" if reference else "-"
        overlap = "-"
        if "factors" in result and "factors" in bare and method != "implicit":
            overlap = f"{_overlap(result['factors'], bare['factors'], video_ids, neighbour_overlap, ItemVectors):.2f}"  # noqa: E501
        print(
            f"| {LABELS[method]} | {best:.2f} | {median:.2f} | {ratio} | "
            f"{result['peak_mb']:.0f} | {overlap} |"
        )
        if result.get("note"):
            notes.append(f"{method}: {result['note']}")
        every = " ".join(f"{x:.2f}" for x in result["seconds"])
        notes.append(f"{method}, every fit in s: {every}")
        if "pairs" in result:
            notes.append(_paired_summary(result["pairs"]))
    print("\ntop-10 overlap: mean share of each video's 10 nearest neighbours in common with bare")
    print("implicit (1.00: the same lists); ours uses the same seed and matrix, Spark other maths")
    for note in notes:
        print(f"note, {note}")


def _overlap(a, b, video_ids, neighbour_overlap, ItemVectors) -> float:
    first, second = ItemVectors.from_raw(video_ids, a), ItemVectors.from_raw(video_ids, b)
    queries = video_ids[:: max(1, len(video_ids) // 2000)]
    return neighbour_overlap(first, second, 10, queries)


if __name__ == "__main__":
    main()
