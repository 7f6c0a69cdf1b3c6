"""Publishing the related table into Feast's online store and reading it back, on SQLite and on a
real Redis server: the blue/green copies, the live pointer, and readers that never see a mix."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from pipelines import feature_store, online
from tests.pipelines.redis_server import RedisServer, running_redis

STORES = ("sqlite", "redis")
READER_DEADLINE_S = 180.0  # the reader thread stops by then whatever happens


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module", params=STORES)
def applied_repo(request, tmp_path_factory) -> tuple[Path, RedisServer | None]:
    """A feature repo deployed and applied once per store (`feast apply` takes seconds); tests
    take copies. The online store is SQLite in the repo, or the session's Redis."""
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    settings = None
    if server is not None:
        settings = {"type": "redis", "connection_string": server.connection_string}
    repo = feature_store.deploy_repo(
        tmp_path_factory.mktemp("applied") / "repo", online_store=settings
    )
    feature_store.apply(repo)
    return repo, server


@pytest.fixture
def online_repo(applied_repo, tmp_path) -> Path:
    """A fresh copy of the applied repo, nothing published; Redis emptied first (every repo here
    is the same Feast project, so their keys would be shared)."""
    template, server = applied_repo
    if server is not None:
        client = server.client()
        client.flushall()
        client.close()
    return Path(shutil.copytree(template, tmp_path / "feature_repo"))


def related_table(lists: dict[str, list[tuple[str, float, str]]]) -> pd.DataFrame:
    """The related table's columns from {video: [(related, score, reason), ...]}, best first."""
    rows = [
        {
            "video_id": video,
            "rank": rank,
            "related_video_id": related,
            "score": score,
            "reason": reason,
        }
        for video, entries in lists.items()
        for rank, (related, score, reason) in enumerate(entries, start=1)
    ]
    # Shuffled: the order of the rows must not matter, the ranks do.
    return pd.DataFrame(rows).sample(frac=1.0, random_state=7).reset_index(drop=True)


def version_lists(version: int, videos: list[str]) -> dict[str, list[tuple[str, float, str]]]:
    """Lists that differ in every entry between versions, so a mix would show."""
    return {
        video: [
            (other, round(version + 1 / rank, 6), f"shares tags=t{version}-{rank}")
            for rank, other in enumerate([v for v in videos if v != video][:3], start=1)
        ]
        for video in videos
    }


def assert_served(
    found: online.RelatedList | None,
    expected: list[tuple[str, float, str]],
    version: str,
) -> None:
    assert found is not None
    assert found.version == version
    assert found.related_video_ids == [entry[0] for entry in expected]
    assert found.scores == pytest.approx([entry[1] for entry in expected])
    assert found.reasons == [entry[2] for entry in expected]


def test_publish_and_read_back_through_the_live_copy(online_repo):
    videos = [f"v{i:03d}" for i in range(6)]
    with pytest.raises(online.NothingPublished):
        online.read_related(online_repo, videos[:1])
    assert online.read_live(online_repo) is None

    first = version_lists(1, videos)
    live = online.publish_table(online_repo, related_table(first), "1")
    assert (live.color, live.version, live.videos, live.rows) == ("blue", "1", 6, 18)
    assert online.read_live(online_repo) == live
    found = online.read_related(online_repo, [*videos, "v-unknown"])
    for video in videos:
        assert_served(found[video], first[video], "1")
    assert found["v-unknown"] is None

    # v2 into the green copy: v005 dropped, v000 changed (one related video fewer, new scores).
    second = {video: lists for video, lists in version_lists(2, videos).items() if video != "v005"}
    second["v000"] = [("v004", 9.5, "shares actors=a1"), ("v002", 9.25, "shares staff=s9")]
    live = online.publish_table(online_repo, related_table(second), "2")
    assert (live.color, live.version, live.videos) == ("green", "2", 5)
    found = online.read_related(online_repo, videos)
    for video in videos[:5]:
        assert_served(found[video], second[video], "2")
    assert found["v005"] is None  # green never held it

    # v3 back into the blue copy, which still holds v1's row of v004: v004 is dropped in v3,
    # and that stale row (version 1) must not be served.
    third = {video: lists for video, lists in version_lists(3, videos).items() if video != "v004"}
    live = online.publish_table(online_repo, related_table(third), "3")
    assert (live.color, live.version, live.videos) == ("blue", "3", 5)
    found = online.read_related(online_repo, videos)
    for video in third:
        assert_served(found[video], third[video], "3")
    assert found["v004"] is None
    stale = feature_store.online_features(
        online_repo, ["related_videos_blue:table_version"], [{"video_id": "v004"}]
    )
    assert stale["table_version"].tolist() == ["1"]  # present in the copy, yet not served


@dataclass
class Read:
    before: online.Live  # the pointer the read went through
    after: online.Live | None  # the pointer right after it
    found: dict[str, online.RelatedList | None] | None
    error: Exception | None = None


def test_a_reader_never_sees_a_mix(online_repo):
    """A reader loops over a fixed set of videos while v2 then v3 are published: every read's
    lists come from one version and are exactly that version's lists; a read whose pointer stayed
    live throughout is complete."""
    videos = [f"v{i:03d}" for i in range(8)]
    tables = {str(version): version_lists(version, videos) for version in (1, 2, 3)}
    del tables["2"]["v007"]  # a video dropped by v2 and back in v3
    online.publish_table(online_repo, related_table(tables["1"]), "1")

    reads: list[Read] = []
    publishing_done = threading.Event()

    def reader() -> None:
        deadline = time.monotonic() + READER_DEADLINE_S
        after = 0
        # Until a few reads after the last publish, or the deadline.
        while time.monotonic() < deadline and after < 5:
            if publishing_done.is_set():
                after += 1
            before = online.read_live(online_repo)
            try:
                found = online.read_related(online_repo, videos, live=before)
            except Exception as error:  # judged below, with the pointer
                reads.append(Read(before, online.read_live(online_repo), None, error))
                continue
            reads.append(Read(before, online.read_live(online_repo), found))

    def reader_saw(version: str) -> None:
        deadline = time.monotonic() + 30
        while not any(read.before.version == version for read in reads):
            assert time.monotonic() < deadline, f"the reader never read under v{version}"
            time.sleep(0.01)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        reader_saw("1")
        for version in ("2", "3"):
            online.publish_table(online_repo, related_table(tables[version]), version)
            reader_saw(version)
    finally:
        publishing_done.set()
        thread.join(READER_DEADLINE_S + 10)
    assert not thread.is_alive(), "the reader did not stop"

    moved = 0
    for read in reads:
        version = read.before.version
        steady = read.after == read.before
        if read.error is not None:
            # Only a read whose pointer was replaced under it may fail (Feast refuses a copy
            # that is being materialized again); a steady pointer must read.
            assert not steady, f"a read under v{version} failed: {read.error!r}"
            moved += 1
            continue
        assert read.found is not None
        versions = {found.version for found in read.found.values() if found is not None}
        assert versions <= {version}, f"one read mixed versions {sorted(versions)}"
        for video, found in read.found.items():
            if found is not None:
                assert_served(found, tables[version][video], version)
            elif video in tables[version]:
                # Missing, never wrong: the pointer went stale by two publishes during this
                # read, so its copy was being rewritten.
                assert not steady, f"v{version} lost {video} in a read with a steady pointer"
        moved += not steady
    assert {read.before.version for read in reads} == {"1", "2", "3"}
    last = reads[-1]
    assert last.before.version == "3" and last.found is not None
    for video in videos:
        assert_served(last.found[video], tables["3"][video], "3")
    print(f"{len(reads)} reads, {moved} with the pointer replaced during the read")
