"""Benchmark of stage 1 (content-gated candidate pairs) on the synthetic catalog: our blocked prefix
search against sparse_dot_topn and against a blocked dense brute force, each in a fresh process.

Run: `make bench`, or `python -m benchmarks.bench_candidates --videos 100000`. Prints figures and a
Markdown table; asserts no timing. Peak memory: the process's peak resident set (VmHWM, reset once
the profile matrix is loaded) minus its resident set then, so C allocations count too. Not
ru_maxrss: Linux carries it over from the parent across fork and exec, which hid everything
below the parent's own size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.memory import memory_mb, reset_peak

METHODS = ("ours", "sparse_dot_topn", "dense")
LABELS = {
    "ours": "ours: prefix-filtered blocks (models.candidates)",
    "sparse_dot_topn": "sparse_dot_topn sp_matmul_topn",
    "dense": "blocked dense reference",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000, help="catalog size (100000)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    parser.add_argument(
        "--dense-budget",
        type=float,
        default=90.0,
        help="seconds the dense reference may take; beyond, it runs on a uniform sample of "
        "source rows and its time is extrapolated (90)",
    )
    parser.add_argument("--dense-block", type=int, default=256, help="dense block rows (256)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _work(args.worker, Path(args.folder), args)
        return
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    _compare(args, ["ours", *[m for m in methods if m != "ours"]], shown=methods)


def _compare(args: argparse.Namespace, methods: list[str], shown: list[str]) -> None:
    from pipelines.config import load_config

    config = load_config()
    settings = config.candidates
    with tempfile.TemporaryDirectory(prefix="bench-candidates-") as tmp:
        folder = Path(tmp)
        profiles, seconds = _profiles(config, args.videos)
        sp.save_npz(folder / "profiles.npz", profiles, compressed=False)
        (folder / "settings.json").write_text(json.dumps(settings.model_dump()))
        lengths = np.diff(profiles.indptr)
        print(
            f"# Stage 1 candidates on {profiles.shape[0]:,} synthetic videos\n\n"
            f"profiles: {profiles.shape[1]} columns (top {settings.top_k_values} values per "
            f"attribute of {', '.join(config.dataset.video_attributes)}), {profiles.nnz:,} ones, "
            f"{lengths.mean():.1f} per video (min {lengths.min()}, max {lengths.max()}); "
            f"catalog and encoding {seconds:.1f} s\n"
            f"e = {settings.threshold}, M = {settings.max_per_source}, "
            f"block = {settings.block_size} sources; one process per method, single-threaded\n",
            flush=True,
        )
        results = {}
        for method in methods:
            print(f"running {method} ...", file=sys.stderr, flush=True)
            completed = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_candidates", "--worker", method,
                 "--folder", str(folder), "--dense-budget", str(args.dense_budget),
                 "--dense-block", str(args.dense_block)],
                check=False,
            )  # fmt: skip
            report = folder / f"{method}.json"
            if completed.returncode != 0 or not report.exists():
                results[method] = {"error": f"exit code {completed.returncode}"}
                continue
            results[method] = json.loads(report.read_text())
            if "error" not in results[method]:
                with np.load(folder / f"{method}.npz") as arrays:
                    results[method]["pairs"] = tuple(arrays[k] for k in ("source", "cand", "sim"))
        _report(results, shown, profiles, settings.max_per_source)


def _profiles(config, n_videos: int) -> tuple[sp.csr_matrix, float]:
    """The synthetic catalog at the xlarge preset's settings with `n_videos` videos, encoded."""
    from models.profile import encode_profiles, fit_vocabulary
    from simulator.catalog import make_catalog

    started = time.perf_counter()
    size = config.synthetic.sizes["xlarge"].model_copy(update={"videos": n_videos})
    start = pd.Timestamp(config.synthetic.start_date, tz="UTC")
    catalog = make_catalog(config.synthetic, size, start, np.random.default_rng(config.seed))
    attributes = config.dataset.video_attributes
    vocabulary = fit_vocabulary(catalog.videos, attributes, config.candidates.top_k_values)
    return encode_profiles(catalog.videos, vocabulary), time.perf_counter() - started


def _work(method: str, folder: Path, args: argparse.Namespace) -> None:
    """One method in this fresh process: time it, measure its memory, save its pairs."""
    settings = json.loads((folder / "settings.json").read_text())
    e, limit = settings["threshold"], settings["max_per_source"]
    profiles = sp.load_npz(folder / "profiles.npz").tocsr()
    report: dict = {"note": ""}
    if method == "sparse_dot_topn":
        try:
            from sparse_dot_topn import sp_matmul_topn
        except ImportError:
            report["error"] = "not installed: pip install -e '.[bench]'"
            (folder / f"{method}.json").write_text(json.dumps(report))
            return
    import models.candidates as candidates

    reset_peak()
    baseline = memory_mb("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    if method == "ours":
        pairs = candidates.candidate_arrays(profiles, e, limit, settings["block_size"])
    elif method == "sparse_dot_topn":
        pairs, report["note"] = _sparse_dot_topn(sp_matmul_topn, profiles, e, limit, baseline)
    else:
        pairs, rows, sample = _dense(candidates, profiles, e, limit, args)
        if rows is not None:
            report["sampled_sources"] = rows.tolist()
            report["estimate"] = [spent * profiles.shape[0] / len(rows) for spent in sample]
            report["note"] = (
                f"run on a uniform sample of {len(rows):,} source rows; seconds extrapolated to "
                f"all {profiles.shape[0]:,} rows, pairs compared on the sample"
            )
    report["seconds"] = time.perf_counter() - started
    report["cpu_seconds"] = time.process_time() - cpu_started
    report["peak_mb"] = memory_mb("VmHWM") - baseline
    np.savez(folder / f"{method}.npz", source=pairs[0], cand=pairs[1], sim=pairs[2])
    (folder / f"{method}.json").write_text(json.dumps(report))


def _sparse_dot_topn(sp_matmul_topn, profiles, e: float, limit: int, baseline: float):
    """Its product X Xt of the L2-normalized rows holds the self-pair (cosine 1) too, and keeps
    values strictly above its threshold: ask for the top M + 1 above e minus a hair, each row
    sorted, drop the self-pairs, keep M per source. Timed from the raw matrix to those pairs."""
    started = time.perf_counter()
    lengths = np.diff(profiles.indptr).astype(np.float64)
    scale = np.divide(1.0, np.sqrt(lengths), out=np.zeros_like(lengths), where=lengths > 0)
    unit = sp.csr_matrix(sp.diags(scale) @ profiles.astype(np.float64))
    product = sp_matmul_topn(unit, unit.T.tocsr(), top_n=limit + 1, threshold=e - 1e-9, sort=True)
    call = time.perf_counter() - started, memory_mb("VmHWM") - baseline, product.nnz
    source = np.repeat(np.arange(product.shape[0], dtype=np.int64), np.diff(product.indptr))
    other = product.indices != source
    source, candidate = source[other], product.indices[other].astype(np.int64)
    similarity = product.data[other]
    del product, other
    # M + 1 other videos where more than M + 1 tie at cosine 1 and the row's own fell off.
    position = np.arange(len(source))
    first = np.r_[True, source[1:] != source[:-1]] if len(source) else np.zeros(0, dtype=bool)
    kept = position - np.maximum.accumulate(np.where(first, position, 0)) < limit
    note = (
        f"top_n = M + 1, since its top list holds the self-pair (cosine 1), dropped after; "
        f"normalizing and its call alone: {call[0]:.1f} s, {call[1]:.0f} MB, {call[2]:,} entries "
        "(CSR: int32 column, float64 value)"
    )
    return (source[kept], candidate[kept], similarity[kept]), note


def _dense(candidates, profiles: sp.csr_matrix, e: float, limit: int, args: argparse.Namespace):
    """All sources if that fits the budget (judged on a first uniform probe), else a uniform sample
    of source rows sized to the budget; then also the wall and CPU seconds of that sample."""
    n, block = profiles.shape[0], args.dense_block
    probe = _uniform_rows(n, block)
    started = time.perf_counter()
    candidates.dense_reference(profiles, e, limit, block_size=block, source_rows=probe)
    per_row = (time.perf_counter() - started) / max(len(probe), 1)
    if per_row * n <= args.dense_budget:
        return candidates.dense_reference(profiles, e, limit, block_size=block), None, None
    rows = _uniform_rows(n, max(len(probe), int(args.dense_budget / per_row)))
    started, cpu_started = time.perf_counter(), time.process_time()
    pairs = candidates.dense_reference(profiles, e, limit, block_size=block, source_rows=rows)
    return pairs, rows, (time.perf_counter() - started, time.process_time() - cpu_started)


def _report(results: dict, shown: list[str], profiles: sp.csr_matrix, limit: int) -> None:
    from models.candidates import candidate_summary, pair_similarity

    n = profiles.shape[0]
    ours = results["ours"]
    if "error" in ours:
        print(f"ours failed: {ours['error']}")
        return
    print("| method | seconds | CPU seconds | peak MB | pairs | same pairs as ours |")
    print("| --- | --- | --- | --- | --- | --- |")
    notes = []
    for method in shown:
        result = results[method]
        if "error" in result:
            print(f"| {LABELS[method]} | - | - | - | - | {result['error']} |")
            continue
        pairs = result["pairs"]
        seconds, cpu = f"{result['seconds']:.1f}", f"{result['cpu_seconds']:.1f}"
        count = f"{len(pairs[0]):,}"
        mine = ours["pairs"]
        if "sampled_sources" in result:
            sampled = np.asarray(result["sampled_sources"], dtype=np.int64)
            seconds, cpu = (f"~{spent:.0f} (extrapolated)" for spent in result["estimate"])
            count += f" on {len(sampled):,} sampled sources"
            mine = tuple(array[np.isin(mine[0], sampled)] for array in mine)
        same = (
            "-" if method == "ours" else _agreement(mine, pairs, profiles, limit, pair_similarity)
        )
        print(
            f"| {LABELS[method]} | {seconds} | {cpu} | {result['peak_mb']:.0f} | {count} | {same} |"
        )
        if result.get("note"):
            notes.append(f"{method}: {result['note']}")
    output_mb = sum(array.nbytes for array in ours["pairs"]) / 2**20
    print(f"\nours' output: {output_mb:.0f} MB (int64 source, int64 candidate, float64 similarity)")
    for note in notes:
        print(f"note, {note}")
    source, _, similarity = ours["pairs"]
    summary = candidate_summary(
        pd.DataFrame({"source_video_id": source, "content_similarity": similarity}), n, few=5
    )
    print(
        f"\npairs per source (all {n:,} videos, 0 for none): mean "
        f"{summary['pairs_per_source_mean']:.1f}, median {summary['pairs_per_source_median']:.0f},"
        f" p90 {summary['pairs_per_source_p90']:.0f}; at the cap M = {limit}: "
        f"{np.mean(np.bincount(source, minlength=n) == limit):.1%}\n"
        f"coverage (videos with >= 1 candidate): {summary['coverage']:.1%}; "
        f"with fewer than 5: {summary['few_candidates_share']:.1%}\n"
        f"similarity: min {summary['similarity_min']:.3f}, median "
        f"{summary['similarity_median']:.3f}, p90 {summary['similarity_p90']:.3f}"
    )


def _agreement(ours: tuple, theirs: tuple, profiles, limit: int, pair_similarity) -> str:
    """ "yes", "yes up to ties at the M-th place" (a full list whose last similarity several
    candidates share may keep any of them), or how many pairs differ."""
    n = profiles.shape[0]
    mine = ours[0] * n + ours[1]
    other = theirs[0] * n + theirs[1]
    only_mine, only_theirs = np.setdiff1d(mine, other), np.setdiff1d(other, mine)
    if not len(only_mine) and not len(only_theirs):
        return "yes"
    counts = np.bincount(ours[0], minlength=n)
    cut = np.full(n, np.inf)
    np.minimum.at(cut, ours[0], ours[2])
    differing = np.r_[only_mine, only_theirs]
    source, candidate = differing // n, differing % n
    exact = pair_similarity(profiles, source, candidate)
    at_cut = (counts[source] == limit) & (exact == cut[source])
    if at_cut.all():
        return f"yes up to ties at the M-th place ({len(np.unique(source)):,} sources)"
    return f"no: {len(only_mine):,} pairs only ours, {len(only_theirs):,} only theirs"


def _uniform_rows(n: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))


if __name__ == "__main__":
    main()
