"""Benchmark of serving: the HTTP service (`related-videos serve`, uvicorn in a subprocess) under
a closed-loop load generator on loopback, against the read it makes through Feast in-process
and against a raw SQLite point lookup of the same rows in Feast's online table; with 1 and 2
uvicorn workers (`serving.workers`).

Then the phase "load while publishing" (`--phase publish` runs it alone, in about 1.5 minutes on
a built workspace): one `related-videos serve` worker under a paced load (8 client threads,
--publish-rate requests a second) for --publish-seconds; after --quiet-seconds of it, a
subprocess republishes the table back to back until the time is up, alternating two registered
versions (`rollback` while the newer is live, which makes the previous champion live, else
`publish`, which makes the approved challenger live again): each writes the idle blue/green copy
and swaps live.json. (`publish` of the version already live does nothing, and `publish` takes
no version.) The subprocess calls the CLI's entry point (`pipelines.cli.main`), once per
publish, in one interpreter whose imports are done before the load starts. Counted: requests,
errors (any non-200 answer or connection error), mixed answers (a list that is not, field for
field, the list of the version the answer names, old or new), p50/p99 before the first publish
and while publishing, the publishes completed, and the server's open handles on the store. The
phase needs two versions, one in each copy; on a toy workspace without them it registers a
second one by rerunning `main` with merge.manual_weights.share changed and the promotion gate
opened. It leaves the version that was live at its start live again.

Without --workspace, a toy workspace is built first (`related-videos --size toy main` with small
networks, about a minute) in a temporary folder; with --workspace W and no W yet, it is built
there and kept. Each load level is bounded in requests and in seconds.

Run: `make bench-serving`, or `python -m benchmarks.bench_serving --workspace W --size toy`;
the publishing phase alone: `python -m benchmarks.bench_serving --workspace W --phase publish`.
Prints figures and a Markdown table; asserts no timing. The load generator (stdlib http.client,
one keep-alive connection per thread) shares the machine's cores with the server (and, in the
publishing phase, with the publishing process).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
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
# The second version of the publishing phase: another share weight, and a gate that approves it.
SECOND_VERSION_OVERRIDES = (
    "merge.manual_weights.share=4.0",
    "promotion.tolerance=100.0",
    "promotion.absolute_tolerance=1.0",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workspace",
        help="a workspace with a published table (else: a temporary toy one; a W that does not "
        "exist yet: a toy one built there and kept)",
    )
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
    parser.add_argument(
        "--phase",
        choices=("all", "load", "publish"),
        default="all",
        help="load: the load levels and reads; publish: only the load while publishing (all)",
    )
    parser.add_argument(
        "--publish-seconds", type=float, default=40.0, help="the publishing phase's load (40)"
    )
    parser.add_argument(
        "--quiet-seconds", type=float, default=10.0, help="of it, before the first publish (10)"
    )
    parser.add_argument(
        "--publish-rate", type=float, default=100.0, help="its requests per second (100)"
    )
    parser.add_argument("--publish-workers", type=int, default=1, help="its uvicorn workers (1)")
    args = parser.parse_args(argv)
    script = Path(sys.executable).parent / "related-videos"
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workspace = Path(args.workspace or Path(tmp) / "workspace").resolve()
        if not args.workspace or not workspace.exists():
            print(f"building a toy workspace in {workspace} ...", file=sys.stderr, flush=True)
            _run_main(script, workspace, ())
        publishing = args.phase != "load" and _ensure_two_versions(args, script, workspace)
        if args.phase in ("all", "load"):
            _measure(args, script, workspace)
        if publishing:
            _publishing(args, script, workspace)


def _run_main(script: Path, workspace: Path, extra: tuple[str, ...]) -> None:
    sets = [part for item in (*TOY_OVERRIDES, *extra) for part in ("--set", item)]
    subprocess.run(
        [str(script), "--workspace", str(workspace), "--size", "toy", *sets, "main"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _repo(workspace: Path) -> Path:
    return workspace / "data" / "synthetic" / "feature_repo"


def _copies(repo: Path) -> dict[str, pd.DataFrame]:
    """Each version held by the blue and green copies' offline files: its rows, by video."""
    from pipelines import online

    tables = {}
    for path in sorted(online.related_folder(repo).glob("*.parquet")):
        rows = pd.read_parquet(path)
        for version, part in rows.groupby(rows["table_version"].astype(str)):
            tables[version] = part.assign(video_id=part["video_id"].astype(str)).set_index(
                "video_id"
            )
    return tables


def _ensure_two_versions(args, script: Path, workspace: Path) -> bool:
    """Two versions, one in each copy: the publishing phase alternates them. False (the phase
    skipped, with --phase all) for a workspace of another size than toy with one version."""
    from pipelines import online

    repo = _repo(workspace)
    if online.read_live(repo) is None:
        sys.exit(f"{repo}: nothing published; run `related-videos --workspace W main` first")
    if len(_copies(repo)) >= 2:
        return True
    if args.size != "toy":
        message = (
            f"{repo}: one version published; the publishing phase needs two (rerun `main` with "
            "another merge.manual_weights.share and a promotion that approves it)"
        )
        if args.phase == "publish":
            sys.exit(message)
        print(f"{message}: skipped", file=sys.stderr, flush=True)
        return False
    print(
        "registering and publishing a second version (main, "
        + ", ".join(SECOND_VERSION_OVERRIDES) + ") ...",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    _run_main(script, workspace, SECOND_VERSION_OVERRIDES)
    if len(_copies(repo)) < 2:
        sys.exit(f"{repo}: the second `main` did not publish a second version")
    return True


def _measure(args, script: Path, workspace: Path) -> None:
    from pipelines import online

    repo = _repo(workspace)
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


def _publishing(args, script: Path, workspace: Path) -> None:
    """Paced load on one `serve` while a subprocess republishes, alternating two versions."""
    from pipelines import feature_store, online

    repo = _repo(workspace)
    start_live = online.read_live(repo)
    tables = _copies(repo)
    versions = sorted(tables, key=int)[-2:]
    old, new = (tables[v] for v in versions)
    video_ids = sorted(set(old.index) & set(new.index))  # a list in both: no 404 is right
    references = {
        version: {
            video: (
                [str(x) for x in row["related_video_ids"]][: args.n],
                [float(x) for x in row["scores"]][: args.n],
                [str(x) for x in row["reasons"]][: args.n],
            )
            for video, row in tables[version].loc[video_ids].iterrows()
        }
        for version in versions
    }
    differ = sum(references[versions[0]][v] != references[versions[1]][v] for v in video_ids)
    port = _free_port()
    command = [
        str(script), "--workspace", str(workspace), "--size", args.size,
        "--set", f"serving.port={port}", "--set", f"serving.workers={args.publish_workers}",
        "serve",
    ]  # fmt: skip
    log_path = workspace / "bench-publish-serve.log"
    publisher_log = open(workspace / "bench-publish-publisher.log", "w")  # noqa: SIM115
    with open(log_path, "w") as server_log:
        server = subprocess.Popen(
            command, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(port, server)
        for _ in range(4 * args.publish_workers):  # warm-up: every worker opens its store
            _load(port, video_ids[:50], 1, 50, 10.0, args.n)
        print(
            f"# Serving while publishing: v{versions[0]} and v{versions[1]} "
            f"({len(video_ids):,} videos in both, {differ:,} of whose top-{args.n} lists differ); "
            f"live at the start: v{start_live.version} ({start_live.color} copy)\n"
            f"server: `related-videos serve`, {args.publish_workers} worker(s); load: paced at "
            f"{args.publish_rate:.0f}/s over 8 client threads for {args.publish_seconds:.0f} s, "
            f"GET /related/{{id}}?n={args.n}; from {args.quiet_seconds:.0f} s on, a subprocess "
            "republishes back to back (`rollback` / `publish` in turn, through the CLI's entry "
            "point in one process started before the load) until the time is up\n",
            flush=True,
        )
        # One publishing process, its imports (MLflow, Feast, TensorFlow) done before the load:
        # each publish is the CLI's own entry point, as `related-videos publish` runs it.
        publisher = subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.bench_serving import _publisher; "
             f"_publisher({str(workspace)!r}, {args.size!r}, {versions[1]!r}, "
             f"{start_live.version!r})"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=publisher_log, text=True,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        if publisher.stdout.readline().strip() != "ready":
            sys.exit(f"the publishing process did not start; see {publisher_log.name}")
        database = repo / feature_store.online_store_of(repo).get("path", "data/online_store.db")
        handles = [_open_handles(server.pid, database)]
        stop = threading.Event()
        publishes: list[dict] = []
        begin = time.perf_counter()
        to_perf = begin - time.monotonic()

        def follow() -> None:
            """Start the publishes after the quiet seconds; collect them until they are done."""
            if not stop.wait(args.quiet_seconds):
                deadline = time.monotonic() + args.publish_seconds - args.quiet_seconds
                publisher.stdin.write(f"{deadline}\n")
                publisher.stdin.flush()
                for line in publisher.stdout:
                    if line.strip() == "done":
                        break
                    publish = json.loads(line)
                    publish["start"] += to_perf
                    publish["end"] += to_perf
                    publishes.append(publish)
            stop.set()

        thread = threading.Thread(target=follow)
        thread.start()
        records = _paced_checked(
            port, video_ids, references, args.n, args.publish_rate, stop, begin
        )
        thread.join()
        handles.append(_open_handles(server.pid, database))
        # The load has stopped: the publisher puts the version live at the start back, and ends.
        publisher.stdin.write("restore\n")
        publisher.stdin.close()
        publisher.wait(timeout=600)
        ok = [p for p in publishes if p["exit"] == 0 and p["after"] != p["before"]]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        publisher_log.close()
    _print_publishing(args, records, publishes, ok, log_path, begin)
    print(
        f"open handles on {database.name} in the server's processes: {handles[0]} before the "
        f"load, {handles[1]} after {len(publishes)} publishes (a leak would add one per pointer "
        "change per worker: the store a pointer change replaces is closed)"
    )


def _open_handles(session: int, path: Path) -> int:
    """File descriptors open on `path` (or its -wal/-shm) in the processes of a session."""
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getsid(int(proc.name)) != session:
                continue
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).startswith(str(path)):
                    count += 1
        except OSError:  # gone, or not ours to read
            continue
    return count


def _publisher(workspace: str, size: str, newer: str, start_version: str) -> None:
    """The publishing phase's publisher, a subprocess: after its imports it says "ready"; given
    a deadline (time.monotonic()) on stdin, it republishes one version after the other (`rollback`
    while `newer` is live, else `publish`), through the CLI's entry point, until the deadline,
    one JSON line per publish on stdout, then "done"; on the next line of stdin it makes
    `start_version` live again if it is not, and ends. A publish that changes nothing stops it."""
    import contextlib

    import pipelines.main  # noqa: F401  the imports `related-videos publish` makes
    import pipelines.publish  # noqa: F401
    from pipelines import cli, online

    repo = _repo(Path(workspace))

    def once(verb: str) -> int:
        with contextlib.redirect_stdout(sys.stderr):
            return cli.main(["--workspace", workspace, "--size", size, verb])

    print("ready", flush=True)
    deadline = float(sys.stdin.readline())
    while time.monotonic() < deadline:
        before = online.read_live(repo)
        verb = "rollback" if before.version == newer else "publish"
        started = time.monotonic()
        code = once(verb)
        after = online.read_live(repo)
        found = {
            "verb": verb, "start": started, "end": time.monotonic(), "exit": code,
            "before": before.version, "after": after.version if after else None,
        }  # fmt: skip
        print(json.dumps(found), flush=True)
        if code or found["after"] == before.version:
            print(f"`{verb}` changed nothing (exit {code})", file=sys.stderr, flush=True)
            break
    print("done", flush=True)
    sys.stdin.readline()
    now = online.read_live(repo)
    if now is not None and now.version != start_version:
        once("rollback" if now.version == newer else "publish")


def _paced_checked(port, video_ids, references, n: int, rate: float, stop, begin: float):
    """8 client threads, request i due at begin + i / rate, until `stop`; per request (due time
    from begin, latency from due time, outcome, version answered). Outcome: ok, mixed (not the
    list of the version it names, or a version that is neither), HTTP status, or connection."""
    records: list[tuple[float, float, str, str]] = []
    counter = itertools.count()
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        while not stop.is_set():
            with lock:
                index = next(counter)
            video = video_ids[index % len(video_ids)]
            due = begin + index / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            version = ""
            try:
                connection.request("GET", f"/related/{video}?n={n}")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    outcome = f"HTTP {response.status}"
                else:
                    answer = json.loads(body)
                    version = str(answer.get("version"))
                    outcome = "ok" if _matches(answer, references.get(version), video) else "mixed"
            except (OSError, http.client.HTTPException, ValueError) as error:
                outcome = f"connection ({type(error).__name__})"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append((due - begin, time.perf_counter() - due, outcome, version))
        connection.close()
        with lock:
            records.extend(mine)

    clients = [threading.Thread(target=client) for _ in range(8)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    return records


def _matches(answer: dict, reference: dict | None, video: str) -> bool:
    """Whether an answer is, field for field, its version's list for this video."""
    if reference is None or video not in reference or answer.get("video_id") != video:
        return False
    ids, scores, reasons = reference[video]
    related = answer.get("related") or []
    return (
        [r["video_id"] for r in related] == ids
        and [r["reason"] for r in related] == reasons
        and [r["rank"] for r in related] == list(range(1, len(ids) + 1))
        and np.allclose([r["score"] for r in related], scores, rtol=1e-9, atol=1e-12)
    )


def _print_publishing(args, records, publishes, ok, log_path: Path, begin: float) -> None:
    first = publishes[0]["start"] - begin if publishes else math.inf
    last = max(p["end"] for p in publishes) - begin if publishes else math.inf
    windows = [
        ("before the first publish", lambda t: t < first),
        ("while publishing (first start to last end)", lambda t: first <= t <= last),
        ("after the last publish", lambda t: t > last),
        ("whole run", lambda t: True),
    ]
    print(
        "| window | seconds | requests | errors | mixed | per second | p50 ms | p99 ms | max ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = {}
    for label, inside in windows:
        chosen = [r for r in records if inside(r[0])]
        if not chosen:
            continue
        span = max(r[0] for r in chosen) - min(r[0] for r in chosen)
        latencies = np.asarray([r[1] for r in chosen]) * 1000
        errors = sum(r[2] not in ("ok", "mixed") for r in chosen)
        mixed = sum(r[2] == "mixed" for r in chosen)
        p50, p99 = np.percentile(latencies, [50, 99])
        lines[label] = (len(chosen), errors, mixed, p50, p99)
        print(
            f"| {label} | {span:.1f} | {len(chosen):,} | {errors} | {mixed} | "
            f"{len(chosen) / span if span else 0:,.0f} | {p50:.2f} | {p99:.2f} | "
            f"{latencies.max():.1f} |"
        )
    outcomes: dict[str, int] = {}
    served: dict[str, int] = {}
    for _, _, outcome, version in records:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if version:
            served[version] = served.get(version, 0) + 1
    shown = [
        f"{p['verb']} v{p['before']} -> v{p['after']} in {p['end'] - p['start']:.1f} s"
        + ("" if p["exit"] == 0 else f" (exit {p['exit']})")
        for p in publishes
    ]
    if len(publishes) > 4:  # the first one pays the process's first MLflow and Feast calls
        rest = np.asarray([p["end"] - p["start"] for p in publishes[1:]])
        shown[1:] = [
            f"then {len(rest)} more, {rest.min():.1f} to {rest.max():.1f} s "
            f"(median {np.median(rest):.1f} s)"
        ]
    print(
        f"\npublishes completed during the load: {len(ok)} of {len(publishes)} started ("
        + ", ".join(shown)
        + ")"
    )
    print("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())))
    print("versions answered: " + ", ".join(f"v{k} {v:,}" for k, v in sorted(served.items())))
    text = log_path.read_text(errors="replace")
    warnings_seen = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]
    print(
        f"server log ({log_path}): {text.count('serving related-videos v')} pointer changes "
        f"picked up, {len(warnings_seen)} warning/error lines"
        + (f"; first: {warnings_seen[0][:300]}" if warnings_seen else "")
    )
    whole = lines.get("whole run", (0, 0, 0, 0, 0))
    during = lines.get("while publishing (first start to last end)")
    before = lines.get("before the first publish")
    print(
        f"\n| load while publishing, {args.publish_workers} worker(s), paced at "
        f"{args.publish_rate:.0f}/s | {whole[0]:,} requests | {whole[1]} errors | "
        f"{whole[2]} mixed | "
        f"p50/p99 before {before[3]:.2f}/{before[4]:.2f} ms | "
        f"during {during[3]:.2f}/{during[4]:.2f} ms | {len(ok)} publishes |"
        if before and during
        else "\n(no publish window: see the messages above)"
    )


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
