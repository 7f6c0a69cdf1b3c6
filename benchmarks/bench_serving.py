"""Benchmark of serving: the HTTP service (`related-videos serve`, uvicorn in a subprocess) under
a closed-loop load generator on loopback, against the read it makes through Feast in-process
and against a raw SQLite point lookup of the same rows in Feast's online table; with 1 and 2
uvicorn workers (`serving.workers`).

Without --workspace, a toy workspace is built first (`related-videos --size toy main` with small
networks, about a minute). Each load level is bounded in requests and in seconds.

Run: `make bench-serving`, or `python -m benchmarks.bench_serving --workspace W --size toy`.
Prints figures and a Markdown table; asserts no timing. The load generator (stdlib http.client,
one keep-alive connection per thread) shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Small networks, as tests/conftest.py's SMALL_MODELS, and routing loose enough for 3,000 events.
TOY_OVERRIDES = (
    "coordinating.hidden_units=[16, 8]",
    "coordinating.folds=2",
    "coordinating.epochs=3",
    "two_tower.tower_units=[32, 16]",
    "two_tower.embedding_dim=8",
    "two_tower.max_epochs=3",
    "two_tower.batch_size=128",
    "coordinating.threshold=0.3",
    "training.min_positives=3",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="a workspace with a published table (else: toy)")
    parser.add_argument("--size", default="toy", help="its synthetic preset (toy)")
    parser.add_argument("--concurrency", default="1,4,16", help="client threads per level")
    parser.add_argument(
        "--rates",
        default="100,200",
        help="paced levels, requests per second over 8 threads; latency counted from each "
        "request's scheduled time, so a slow answer delays the ones queued behind it (100,200)",
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per level (3000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per level at most")
    parser.add_argument("--n", type=int, default=10, help="?n= of each request (10)")
    parser.add_argument(
        "--workers", default="1,2", help="uvicorn worker processes (serving.workers), per run"
    )
    args = parser.parse_args(argv)
    script = Path(sys.executable).parent / "related-videos"
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workspace = Path(args.workspace or Path(tmp) / "workspace").resolve()
        if not args.workspace:
            print("building a toy workspace ...", file=sys.stderr, flush=True)
            sets = [part for item in TOY_OVERRIDES for part in ("--set", item)]
            subprocess.run(
                [str(script), "--workspace", str(workspace), "--size", "toy", *sets, "main"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        _measure(args, script, workspace)


def _measure(args, script: Path, workspace: Path) -> None:
    from pipelines import online

    repo = workspace / "data" / "synthetic" / "feature_repo"
    live = online.read_live(repo)
    if live is None:
        sys.exit(f"{repo}: nothing published; run `related-videos --workspace W main` first")
    video_ids = pd.read_parquet(online.related_folder(repo) / f"{live.color}.parquet")["video_id"]
    video_ids = video_ids.astype(str).to_numpy()
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        rows += _load_server(args, script, workspace, live, video_ids, workers)
    rows.append(("Feast get_online_features in-process (the service's read)",)
                + _feast_reads(repo, live, video_ids, args.requests, args.seconds))  # fmt: skip
    rows.append(("raw SQLite point lookup, same rows",)
                + _sqlite_reads(repo, live, args.requests, decode=False))  # fmt: skip
    rows.append(("raw SQLite point lookup + protobuf decode",)
                + _sqlite_reads(repo, live, args.requests, decode=True))  # fmt: skip
    print("| path | requests | errors | per second | p50 ms | p99 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, count, errors, rate, latencies in rows:
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(
            f"| {label} | {count:,} | {errors} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | "
            f"{latencies.max() * 1000:.1f} |"
        )
    print("\nthe in-process and SQLite rows are one thread, one read after another")


def _load_server(args, script: Path, workspace: Path, live, video_ids, workers: int) -> list:
    """The load levels against one `related-videos serve` with this many workers."""
    port = _free_port()
    command = [
        str(script), "--workspace", str(workspace), "--size", args.size,
        "--set", f"serving.port={port}", "--set", f"serving.workers={workers}", "serve",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    label, rows = f"HTTP service, {workers} worker{'s' if workers > 1 else ''}", []
    try:
        _wait_healthy(port, server)
        print(
            f"# Serving: {live.videos:,} videos in the live table (v{live.version}, {live.color} "
            f"copy, SQLite online store); GET /related/{{id}}?n={args.n}, ids in turn\n"
            f"server: `related-videos serve` (uvicorn, {workers} worker(s), access log on); "
            f"client: http.client keep-alive, one connection per thread, same machine; each level "
            f"at most {args.requests:,} requests or {args.seconds:.0f} s\n",
            flush=True,
        )
        for _ in range(4 * workers):  # warm-up: every worker opens its store
            _load(port, video_ids[:50], 1, 50, 10.0, args.n)
        for threads in (int(c) for c in args.concurrency.split(",")):
            rows.append(
                (f"{label}, {threads} client threads",)
                + _load(port, video_ids, threads, args.requests, args.seconds, args.n)
            )
        for rate in (float(r) for r in args.rates.split(",") if r.strip()):
            rows.append(
                (f"{label}, paced at {rate:.0f}/s, 8 client threads",)
                + _load(port, video_ids, 8, args.requests, args.seconds, args.n, rate)
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return rows


def _load(port, video_ids, threads: int, requests: int, seconds: float, n: int, rate=None):
    """Closed loop: `threads` clients, each with one keep-alive connection, until `requests`
    in all or `seconds`; (requests, errors, per second, latencies in seconds). With `rate`,
    request i is due at start + i / rate and its latency runs from then."""
    latencies: list[float] = []
    errors = [0]
    counter = iter(range(requests))
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        while time.perf_counter() < deadline:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            path = f"/related/{video_ids[index % len(video_ids)]}?n={n}"
            started = time.perf_counter()
            if rate:
                due = begin + index / rate
                if due > started:
                    time.sleep(due - started)
                started = due
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and body
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.perf_counter() - started)
            if not ok:
                with lock:
                    errors[0] += 1
        connection.close()
        with lock:
            latencies.extend(mine)

    started = begin = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    spent = time.perf_counter() - started
    return len(latencies), errors[0], len(latencies) / spent, np.asarray(latencies)


def _feast_reads(repo: Path, live, video_ids, requests: int, seconds: float):
    from pipelines import feature_store, online

    store = feature_store.open_store(repo)
    online.read_related(repo, list(video_ids[:1]), live=live, store=store)  # warm-up
    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    for index in range(requests):
        if time.perf_counter() > deadline:
            break
        begun = time.perf_counter()
        found = online.read_related(
            repo, [video_ids[index % len(video_ids)]], live=live, store=store
        )
        latencies.append(time.perf_counter() - begun)
        errors += next(iter(found.values())) is None
    return (
        len(latencies),
        errors,
        len(latencies) / (time.perf_counter() - started),
        np.asarray(latencies),
    )


def _sqlite_reads(repo: Path, live, requests: int, decode: bool):
    """SELECT every feature of one entity key of the live copy's table, keys in turn."""
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from pipelines import feature_store, online

    settings = feature_store.online_store_of(repo)
    project = _project(repo)
    table = f"{project}_{online.view_name(live.color)}"
    connection = sqlite3.connect(repo / settings.get("path", "data/online_store.db"))
    keys = [row[0] for row in connection.execute(f"SELECT DISTINCT entity_key FROM {table}")]
    query = f"SELECT feature_name, value FROM {table} WHERE entity_key = ?"
    latencies, errors = [], 0
    started = time.perf_counter()
    for index in range(requests):
        begun = time.perf_counter()
        rows = connection.execute(query, (keys[index % len(keys)],)).fetchall()
        if decode:
            for _, blob in rows:
                ValueProto.FromString(blob)
        latencies.append(time.perf_counter() - begun)
        errors += not rows
    spent = time.perf_counter() - started
    connection.close()
    return len(latencies), errors, len(latencies) / spent, np.asarray(latencies)


def _project(repo: Path) -> str:
    import yaml

    return yaml.safe_load((repo / "feature_store.yaml").read_text())["project"]


def _wait_healthy(port: int, server: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with code {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"the server did not answer /health within {seconds:.0f} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
