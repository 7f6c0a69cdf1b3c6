"""The related-video service for real: uvicorn on a loopback port over the toy pipeline's feature
repo, asked through a socket; the CLI's text; and Feast's own `feast serve` on the same repo."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx2 as httpx
import pandas as pd
import pytest
import uvicorn

from pipelines import feature_store, online
from pipelines.serve import UnknownVideo, create_app, related_lines
from pipelines.workspace import feature_repo_dir
from tests.pipelines.redis_server import free_port

TOP_N = 5
MAX_N = 8
START_TIMEOUT_S = 300.0  # a loaded 2-core machine running two test workers starts slowly


def related_table_from(pairs: pd.DataFrame, top_n: int, shift: float = 0.0) -> pd.DataFrame:
    """A related table from candidate pairs: per source the top_n by content similarity (plus
    `shift`, so that versions differ), with the shared values as the reason."""
    ranked = pairs.sort_values(
        ["source_video_id", "content_similarity", "candidate_video_id"],
        ascending=[True, False, True],
    )
    ranked = ranked.groupby("source_video_id", sort=False).head(top_n)
    return pd.DataFrame(
        {
            "video_id": ranked["source_video_id"].astype(str).to_numpy(),
            "rank": ranked.groupby("source_video_id").cumcount().to_numpy() + 1,
            "related_video_id": ranked["candidate_video_id"].astype(str).to_numpy(),
            "score": ranked["content_similarity"].to_numpy() + shift,
            "reason": [
                f"shares {', '.join(list(shared)[:3])}; v+{shift:g}" for shared in ranked["shared"]
            ],
        }
    )


def expected_list(table: pd.DataFrame, video_id: str) -> list[dict]:
    rows = table[table["video_id"] == video_id].sort_values("rank")
    return [
        {"rank": int(r.rank), "video_id": r.related_video_id, "score": r.score, "reason": r.reason}
        for r in rows.itertuples()
    ]


def next_version(repo: Path) -> int:
    """A version no earlier publish in this (shared) repo used: online.read_related trusts a
    copy's rows by their version, so a version must never repeat within a repo."""
    live = online.read_live(repo)
    return int(live.version) + 1 if live is not None and live.version.isdigit() else 1


@contextmanager
def serving(app, **settings) -> Iterator[str]:
    """uvicorn on a free loopback port in a background thread, with uvicorn.Config `settings`;
    yields the base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **settings
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def published(toy_pipeline) -> dict:
    """The toy repo with a related table of the toy candidate pairs live."""
    repo = feature_repo_dir(toy_pipeline.config)
    table = related_table_from(toy_pipeline.candidates.pairs, TOP_N)
    version = str(next_version(repo))
    live = online.publish_table(repo, table, version)
    # A test that publishes again updates "table" and "live".
    return {
        "repo": repo,
        "pairs": toy_pipeline.candidates.pairs,
        "table": table,
        "live": live,
        "config": toy_pipeline.config,
    }


@pytest.fixture(scope="module")
def service(published) -> Iterator[httpx.Client]:
    app = create_app(published["repo"], max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def served_videos(table: pd.DataFrame) -> list[str]:
    """A few videos with full lists, and one with a short list if there is one."""
    sizes = table.groupby("video_id").size()
    full = sizes[sizes == TOP_N].index[:3].tolist()
    short = sizes[sizes < TOP_N].index[:1].tolist()
    assert len(full) == 3, "the toy table has too few full lists to check"
    return full + short


def test_related_answers_the_live_lists(service, published):
    table, live = published["table"], published["live"]
    for video_id in served_videos(table):
        response = service.get(f"/related/{video_id}")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["video_id"] == video_id
        assert answer["version"] == live.version
        expected = expected_list(table, video_id)
        assert [entry["video_id"] for entry in answer["related"]] == [
            entry["video_id"] for entry in expected
        ]
        assert [entry["rank"] for entry in answer["related"]] == list(range(1, len(expected) + 1))
        assert [entry["reason"] for entry in answer["related"]] == [e["reason"] for e in expected]
        assert [entry["score"] for entry in answer["related"]] == pytest.approx(
            [entry["score"] for entry in expected]
        )


def test_n_truncates_the_list(service, published):
    video_id = served_videos(published["table"])[0]
    full = service.get(f"/related/{video_id}").json()["related"]
    for n in (1, 3):
        answer = service.get(f"/related/{video_id}", params={"n": n}).json()
        assert answer["related"] == full[:n]
    # More than the table holds: the whole list, no padding.
    assert service.get(f"/related/{video_id}", params={"n": MAX_N}).json()["related"] == full


def test_unknown_and_malformed_requests(service):
    unknown = service.get("/related/v-not-in-the-catalog")
    assert unknown.status_code == 404
    assert "not in the live related table" in unknown.json()["detail"]
    for malformed in ("bad%20id%21", "x" * 129, "v%C3%A9", "a%2Fb"):
        response = service.get(f"/related/{malformed}")
        # a%2Fb decodes to a path with a slash, which no route matches.
        assert response.status_code in ((404,) if malformed == "a%2Fb" else (422,)), malformed
    assert service.get(f"/related/{'x' * 128}").status_code == 404  # well-formed, unknown
    for n in ("0", str(MAX_N + 1), "abc", "-1", "2.5"):
        assert service.get("/related/v000000", params={"n": n}).status_code == 422, n


def test_the_api_refuses_exactly_the_ids_the_gate_refuses(tmp_path):
    from pipelines import serve
    from pipelines.data.contract import ID_PATTERN, malformed_ids

    assert serve.VIDEO_ID is ID_PATTERN  # one pattern, defined in the contract
    refused = ["v|1", "v,1", "v1%0A", "v%001", "%20v1", "v1%20", "x" * 129]
    decoded = ["v|1", "v,1", "v1\n", "v\x001", " v1", "v1 ", "x" * 129]
    assert malformed_ids(pd.Series(decoded)).all()
    assert not malformed_ids(pd.Series(["v000000", "a:b-c.d_E"])).any()
    app = create_app(tmp_path, max_n=MAX_N, default_n=TOP_N)  # nothing published: 503
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        for video_id in refused:
            assert client.get(f"/related/{video_id}").status_code == 422, video_id
        for video_id in ("v000000", "a:b-c.d_E"):
            assert client.get(f"/related/{video_id}").status_code == 503, video_id


def test_health_says_what_is_live(service, published):
    response = service.get("/health")
    assert response.status_code == 200
    health = response.json()
    live = online.read_live(published["repo"])
    assert health == {
        "status": "ok",
        "version": live.version,
        "color": live.color,
        "videos": live.videos,
        "published_at": live.published_at,
    }


def test_a_new_version_is_served_without_a_restart(service, published):
    repo, first = published["repo"], published["table"]
    video_id, other = served_videos(first)[:2]
    before = service.get(f"/related/{video_id}").json()
    second = related_table_from(published["pairs"], TOP_N, shift=1.0)
    second = second[second["video_id"] != other]  # a video dropped by the new version
    version = str(next_version(repo))
    live = online.publish_table(repo, second, version)
    published.update(table=second, live=live)

    answer = service.get(f"/related/{video_id}").json()
    assert answer["version"] == version != before["version"]
    assert [entry["reason"] for entry in answer["related"]] == [
        entry["reason"] for entry in expected_list(second, video_id)
    ]
    assert service.get(f"/related/{other}").status_code == 404
    assert service.get("/health").json()["color"] == live.color


def test_nothing_published_is_a_503_until_the_first_publish(tmp_path, published):
    repo = feature_store.deploy_repo(tmp_path / "feature_repo")
    feature_store.apply(repo)  # no profile data needed: the views' schemas are declared
    app = create_app(repo, max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        for path in ("/related/v000000", "/health"):
            response = client.get(path)
            assert response.status_code == 503
            assert "no related table is published yet" in response.json()["detail"]
            assert str(tmp_path) not in response.text and "/" not in response.json()["detail"]
        table = published["table"]
        online.publish_table(repo, table, "1")
        video_id = served_videos(table)[0]
        answer = client.get(f"/related/{video_id}").json()
        assert answer["version"] == "1"
        assert [entry["video_id"] for entry in answer["related"]] == [
            entry["video_id"] for entry in expected_list(table, video_id)
        ]


@pytest.fixture
def repo_copy(published, tmp_path) -> Path:
    """A copy of the published repo (its registry, online store and pointer) free to break."""
    return Path(shutil.copytree(published["repo"], tmp_path / "feature_repo"))


def assert_unavailable(client: httpx.Client, video_id: str, says: str, where: Path) -> None:
    """/health and /related answer 503 with the reason, and name no path of the server."""
    for path in ("/health", f"/related/{video_id}"):
        response = client.get(path)
        assert response.status_code == 503, (path, response.text)
        assert says in response.json()["detail"], response.text
        assert str(where) not in response.text and str(Path.cwd()) not in response.text


def test_a_corrupt_registry_is_a_503_with_the_reason_then_healed(repo_copy, published):
    registry = repo_copy / "data" / "registry.db"
    good = registry.read_bytes()
    registry.write_bytes(b"\x0a\xff\xff not a registry")
    video_id = served_videos(published["table"])[0]
    app = create_app(repo_copy, max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert_unavailable(client, video_id, "Feast registry cannot be read", repo_copy)
        registry.write_bytes(good)  # repaired: served again without a restart
        assert client.get("/health").status_code == 200
        assert client.get(f"/related/{video_id}").status_code == 200


def test_a_registry_corrupted_while_serving_turns_health_to_503(repo_copy):
    app = create_app(repo_copy, max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").status_code == 200
        (repo_copy / "data" / "registry.db").write_bytes(b"\x0a\xff\xff not a registry")
        response = client.get("/health")
        assert response.status_code == 503 and "registry" in response.json()["detail"]
        assert str(repo_copy) not in response.text


def test_a_replaced_online_store_is_served_without_a_restart(repo_copy, published):
    """online_store.db overwritten while serving, as `cp backup.db online_store.db` does: first
    with a broken file, a 503 with the reason; then with the good one, served again by the same
    process (the store reopened, no restart)."""
    database = repo_copy / "data" / "online_store.db"
    good = database.read_bytes()
    video_id = served_videos(published["table"])[0]
    app = create_app(repo_copy, max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        expected = client.get(f"/related/{video_id}").json()
        database.write_bytes(b"not a database " * 100)
        for path in ("/health", f"/related/{video_id}"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert str(repo_copy) not in response.text
        database.write_bytes(good)
        assert client.get("/health").status_code == 200
        assert client.get(f"/related/{video_id}").json() == expected


def test_a_truncated_pointer_is_a_503_with_the_reason(repo_copy, published):
    pointer = online.related_folder(repo_copy) / online.LIVE_FILE
    pointer.write_text(pointer.read_text()[:25])
    app = create_app(repo_copy, max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert_unavailable(client, "v000001", "live pointer (live.json) cannot be read", repo_copy)


def test_health_reads_a_row_of_the_live_table(repo_copy, published):
    """A live copy that lost its rows: /health says so, though pointer and registry read."""
    live = online.read_live(repo_copy)
    assert live.probe_video_id in set(published["table"]["video_id"])
    with sqlite3.connect(repo_copy / "data" / "online_store.db") as db:
        tables = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name.endswith(online.view_name(live.color))
        ]
        assert tables
        for name in tables:
            db.execute(f'DELETE FROM "{name}"')
    app = create_app(repo_copy, max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert f"holds no row of v{live.version} for {live.probe_video_id}" in response.text
        assert str(repo_copy) not in response.text


def open_handles(path: Path) -> int:
    """How many file descriptors of this process are open on `path` (Linux's /proc)."""
    target, count = str(path.resolve()), 0
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # closed since the listing
            count += os.readlink(f"/proc/self/fd/{fd}") == target
    return count


PUBLISHES = 50


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts handles through /proc")
def test_publishes_do_not_leak_online_store_connections(repo_copy, published):
    """Each pointer change makes the service open a new store; the replaced one's SQLite
    connection is closed: the handles on online_store.db stay as many over 50 publishes."""
    database = repo_copy / "data" / "online_store.db"
    videos = sorted(published["table"]["video_id"].unique())[:4]
    small = published["table"][published["table"]["video_id"].isin(videos)]
    app = create_app(repo_copy, max_n=MAX_N, default_n=TOP_N)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get(f"/related/{videos[0]}").status_code == 200
        assert client.get("/health").status_code == 200
        before = open_handles(database)
        assert before >= 1  # the service's own connection: the count sees it
        counts = []
        for _ in range(PUBLISHES):
            version = str(next_version(repo_copy))
            online.publish_table(repo_copy, small, version)
            answer = client.get(f"/related/{videos[0]}")
            assert answer.status_code == 200 and answer.json()["version"] == version
            assert client.get("/health").status_code == 200
            counts.append(open_handles(database))
    assert max(counts) <= before, f"handles on {database.name}: {before} before, then {counts}"


def raw_get(url: str, path: str, header_bytes: int) -> bytes:
    """GET `path` through a plain socket with one header of `header_bytes` bytes; what the
    server answered before it closed (b"" if it reset the connection first)."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Padding: {'a' * header_bytes}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        try:
            connection.sendall(head)
            while chunk := connection.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):  # refused while the head still came
            pass
    return answer


def test_request_heads_over_max_header_bytes_are_refused(tmp_path):
    """serving.max_header_bytes (default 64 KiB) bounds a request's line and headers: a head
    over it is refused with 431 (or the connection is dropped while it is still being sent,
    for a 16 MB one), never answered; the server serves normal requests after."""
    from pipelines.config import load_config
    from pipelines.http_limits import uvicorn_settings

    limit = load_config().serving.max_header_bytes
    assert limit == 65536
    app = create_app(tmp_path, max_n=MAX_N, default_n=TOP_N)  # nothing published: 503
    with serving(app, **uvicorn_settings(limit)) as url:
        assert raw_get(url, "/health", 1000).startswith(b"HTTP/1.1 503")
        assert raw_get(url, "/health", limit - 1000).startswith(b"HTTP/1.1 503")
        assert raw_get(url, "/health", limit + 1000).startswith(b"HTTP/1.1 431")
        huge = raw_get(url, "/health", 16 * 1024 * 1024)
        assert huge == b"" or huge.startswith(b"HTTP/1.1 431"), huge[:100]
        assert raw_get(url, "/health", 1000).startswith(b"HTTP/1.1 503")
    with pytest.raises(Exception, match="serving.max_header_bytes"):
        load_config(overrides=["serving.max_header_bytes=100"])


def test_api_docs_are_off_unless_configured(tmp_path):
    paths = ("/docs", "/redoc", "/openapi.json")
    for docs, expected in ((False, [404, 404, 404]), (True, [200, 200, 200])):
        app = create_app(tmp_path, max_n=MAX_N, default_n=TOP_N, docs=docs)
        with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
            assert [client.get(path).status_code for path in paths] == expected, docs
    from pipelines.config import load_config

    assert load_config().serving.docs is False
    assert load_config(overrides=["serving.docs=true"]).serving.docs is True


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_serving_port_is_checked_when_the_configuration_loads(port, tmp_path, capsys):
    from pipelines.cli import EXIT_CONFIG, main
    from pipelines.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"serving\.port: -?\d+ is not a TCP port \(1\.\.65535\)"):
        load_config(overrides=[f"serving.port={port}"])
    assert main(["--workspace", str(tmp_path), "--set", f"serving.port={port}", "serve"]) == (
        EXIT_CONFIG
    )
    assert "serving.port" in capsys.readouterr().err


def test_serve_exits_with_its_own_code_when_it_cannot_listen(tmp_path, capsys):
    from pipelines.cli import EXIT_BIND, EXIT_GATE, main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--workspace", str(tmp_path), "--set", f"serving.port={port}", "serve"])
    assert code == EXIT_BIND != EXIT_GATE
    err = capsys.readouterr().err
    assert f"serving.host:serving.port 127.0.0.1:{port}: cannot listen there" in err
    assert "Traceback" not in err


def test_a_bind_failure_inside_uvicorn_is_not_exit_code_3(tmp_path, monkeypatch, capsys):
    """The port taken between the check and uvicorn's own bind: uvicorn's exit 3 (the gate's
    code here) becomes the command line's own code."""
    from pipelines import serve
    from pipelines.cli import EXIT_BIND, main

    monkeypatch.setattr(serve, "check_can_listen", lambda host, port: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--workspace", str(tmp_path), "--set", f"serving.port={port}", "serve"])
    assert code == EXIT_BIND
    assert "uvicorn could not start listening" in capsys.readouterr().err


def test_create_app_refuses_a_default_above_the_maximum(tmp_path):
    with pytest.raises(ValueError, match="default n"):
        create_app(tmp_path, max_n=3, default_n=5)


def test_related_lines_prints_the_live_list(published):
    config, repo = published["config"], published["repo"]
    live = online.read_live(repo)
    found = online.read_related(repo, served_videos(published["table"])[:1])
    video_id, related = next(iter(found.items()))
    text = related_lines(config, video_id, 2)
    lines = text.splitlines()
    assert lines[0].startswith(f"related videos of {video_id} under v{live.version} ")
    assert len(lines) == 3
    for rank, line in enumerate(lines[1:], start=1):
        assert line.split()[:3] == [
            f"{rank}.",
            related.related_video_ids[rank - 1],
            f"{related.scores[rank - 1]:.3f}",
        ]
        assert line.endswith(related.reasons[rank - 1])
    default = related_lines(config, video_id, None).splitlines()
    assert len(default) == 1 + min(len(related.related_video_ids), config.merge.top_n)
    with pytest.raises(UnknownVideo, match="v-nowhere"):
        related_lines(config, "v-nowhere", None)
    with pytest.raises(ValueError, match="at least 1"):
        related_lines(config, video_id, 0)


def test_related_lines_before_any_publish(tmp_path):
    from pipelines.config import load_config

    empty = load_config(overrides=[f"paths.workspace={tmp_path}"])
    with pytest.raises(online.NothingPublished):
        related_lines(empty, "v000000", None)


@contextmanager
def server_process(command: list[str], cwd: Path, port: int) -> Iterator[httpx.Client]:
    """A server started as its own process group, polled on /health until it answers; stopped
    (with its workers) on exit. Yields a client on it; `.process` holds the Popen."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its workers stop with it
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert process.poll() is None, process.stderr.read().decode()[-2000:]
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{command[0]} did not start"
                time.sleep(0.2)
            client.process = process
            yield client
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_serve_command_with_two_workers(published):
    """`related-videos serve` with serving.workers=2: two uvicorn worker processes, each
    answering the live lists."""
    workspace_root = published["config"].paths.workspace
    port = free_port()
    cli = Path(sys.executable).with_name("related-videos")
    command = [
        str(cli), "--workspace", str(workspace_root), "--size", "toy",
        "--set", f"serving.port={port}", "--set", "serving.workers=2", "serve",
    ]  # fmt: skip
    table = published["table"]
    with server_process(command, Path.cwd(), port) as client:
        for video_id in served_videos(table):
            response = client.get(f"/related/{video_id}", params={"n": TOP_N})
            assert response.status_code == 200, response.text
            got = [entry["video_id"] for entry in response.json()["related"]]
            assert got == [entry["video_id"] for entry in expected_list(table, video_id)]
        assert client.get("/related/not-a-video").status_code == 404
        process = client.process
    log = process.stderr.read().decode()
    assert len(set(re.findall(r"Started server process \[(\d+)\]", log))) == 2, log[-2000:]


def test_feast_serve_answers_the_live_copy(published):
    """Feast's own feature server on the same repo returns the live copy's lists."""
    repo = published["repo"]
    live = online.read_live(repo)
    port = free_port()
    feast = Path(sys.executable).with_name("feast")
    command = [str(feast), "serve", "--host", "127.0.0.1", "-p", str(port), "--no-access-log"]
    with server_process(command, repo, port) as client:
        video_ids = list(online.read_related(repo, served_videos(published["table"])))
        fields = ("related_video_ids", "scores", "reasons", "table_version")
        response = client.post(
            "/get-online-features",
            json={
                "features": [f"related_videos_{live.color}:{field}" for field in fields],
                "entities": {"video_id": video_ids},
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    names = body["metadata"]["feature_names"]
    values = {name: result["values"] for name, result in zip(names, body["results"], strict=True)}
    assert values["video_id"] == video_ids
    assert values["table_version"] == [live.version] * len(video_ids)
    expected = online.read_related(repo, video_ids)
    assert values["related_video_ids"] == [expected[v].related_video_ids for v in video_ids]
    assert values["reasons"] == [expected[v].reasons for v in video_ids]
    for scores, video_id in zip(values["scores"], video_ids, strict=True):
        assert scores == pytest.approx(expected[video_id].scores)
