"""The related-video table in Feast's online store: written into the idle one of two copies
(blue, green), checked, then made live by replacing a small pointer file in one rename; read back
through the live copy. Readers see the old table or the new one, never a mix.

The pointer, data/related/live.json in the feature repo, names the live copy and the registered
related-videos version it holds. A row of another version in that copy (a video the live table
dropped) is not served.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipelines import faults, feature_store
from pipelines.broken import damaged_pointer
from pipelines.feature_store import RELATED_COLORS, TIMESTAMP, FeatureStoreError
from pipelines.redaction import redact

log = logging.getLogger(__name__)

LIVE_FILE = "live.json"
FIELDS = ("related_video_ids", "scores", "reasons", "table_version")
READ_BATCH = 1000  # entity rows per online read when checking a copy
WRITE_BATCH = 10_000  # rows per online write


class NothingPublished(FeatureStoreError):
    """No table has been published into this feature repo yet."""


@dataclass(frozen=True)
class Live:
    """What the pointer says: the live copy, the version it holds, and when it went live."""

    color: str
    version: str
    videos: int
    rows: int
    published_at: str
    table_digest: str = ""
    # The champion alias when this table went live: if the alias still says so, the publish that
    # wrote this pointer was stopped before it moved the alias (see pipelines/promote.py).
    champion_before: str = ""
    # Which online store holds it ("sqlite:<path>", "redis:<host:port>"), secrets redacted (the
    # readers take the real connection string from the repo's feature_store.yaml): a pointer
    # written for another store than the repo's current one says nothing about this one.
    store: str = ""
    # A video the table holds: the service's /health reads its row back through the live copy.
    probe_video_id: str = ""


@dataclass(frozen=True)
class RelatedList:
    video_id: str
    related_video_ids: list[str]
    scores: list[float]
    reasons: list[str]
    version: str


def related_folder(repo: Path) -> Path:
    return Path(repo) / "data" / "related"


def read_live(repo: Path) -> Live | None:
    """The pointer, or None before the first publish; BrokenState naming the file if it is
    damaged (cut short, not a pointer)."""
    path = related_folder(repo) / LIVE_FILE
    if not path.exists():
        return None
    try:
        live = Live(**json.loads(path.read_text()))
    except (ValueError, TypeError) as error:  # not JSON, not an object, not the pointer's keys
        raise damaged_pointer(path, error) from error
    # redact(): pointers written before identities were redacted still match.
    return live if redact(live.store) in ("", store_identity(repo)) else None


def store_identity(repo: Path) -> str:
    """The repo's online store as the pointer records it: kind and location, no secret."""
    settings = feature_store.online_store_of(repo)
    kind = settings.get("type", "sqlite")
    return redact(f"{kind}:{settings.get('connection_string') or settings.get('path', '')}")


def view_name(color: str) -> str:
    return f"related_videos_{color}"


def idle_color(live: Live | None) -> str:
    if live is None:
        return RELATED_COLORS[0]
    return RELATED_COLORS[1 - RELATED_COLORS.index(live.color)]


def feature_rows(table: pd.DataFrame, version: str, at: datetime) -> pd.DataFrame:
    """One row per source video: its related ids, scores and reasons as lists, best first."""
    ordered = table.sort_values(["video_id", "rank"], kind="stable")
    grouped = ordered.groupby("video_id", sort=True)
    rows = pd.DataFrame(
        {
            "related_video_ids": grouped["related_video_id"].agg(lambda s: [str(v) for v in s]),
            "scores": grouped["score"].agg(lambda s: [float(v) for v in s]),
            "reasons": grouped["reason"].agg(lambda s: [str(v) for v in s]),
        }
    ).reset_index()
    rows["video_id"] = rows["video_id"].astype(str)
    rows["table_version"] = str(version)
    rows[TIMESTAMP] = pd.Timestamp(at).tz_convert("UTC")
    return rows


def write_copy(repo: Path, table: pd.DataFrame, version: str, color: str) -> int:
    """Write the table into the `color` copy's offline source and its online rows; return its
    videos. The copy is not live: nothing a reader sees changes.

    The rows go to the online store directly (Feast's write_to_online_store), not through
    `materialize`, which rewrites the registry file in place twice and so, for a moment, shows
    concurrent readers an empty registry."""
    rows = feature_rows(table, version, datetime.now(UTC))
    feature_store.write_atomically(rows, related_folder(repo) / f"{color}.parquet")
    faults.checkpoint("publish:copy-written")
    store = feature_store.open_store(repo)
    try:
        for start in range(0, len(rows), WRITE_BATCH):
            store.write_to_online_store(view_name(color), rows.iloc[start : start + WRITE_BATCH])
    finally:
        feature_store.close_store(store)
    return len(rows)


def check_copy(repo: Path, video_ids: Sequence[str], version: str, color: str) -> None:
    """Every video of the table reads back from the copy with this version; else an error."""
    refs = [f"{view_name(color)}:table_version"]
    ids = [str(v) for v in video_ids]
    for start in range(0, len(ids), READ_BATCH):
        batch = ids[start : start + READ_BATCH]
        found = feature_store.online_features(repo, refs, [{"video_id": v} for v in batch])
        wrong = found[found["table_version"].astype(str) != str(version)]
        if len(wrong):
            raise FeatureStoreError(
                f"{repo}: the {color} copy holds {len(wrong)} of {len(batch)} videos with another "
                f"version than {version} after materializing (e.g. {wrong['video_id'].iloc[0]}); "
                "the live table was left as it was"
            )


def make_live(repo: Path, live: Live) -> None:
    """Point readers at `live.color`: one atomic rename of the pointer file."""
    folder = related_folder(repo)
    scratch = folder / f".{LIVE_FILE}.{os.getpid()}.tmp"
    scratch.write_text(json.dumps(asdict(live), indent=2) + "\n")
    os.replace(scratch, folder / LIVE_FILE)


def publish_table(
    repo: Path,
    table: pd.DataFrame,
    version: str,
    table_digest: str = "",
    champion_before: str = "",
) -> Live:
    """Write, check, then make live. A failure (or a kill) before the last step leaves the live
    table as it was."""
    current = read_live(repo)
    color = idle_color(current)
    videos = write_copy(repo, table, version, color)
    faults.checkpoint("publish:materialized")
    check_copy(repo, table["video_id"].unique(), version, color)
    live = Live(
        color=color,
        version=str(version),
        videos=videos,
        rows=len(table),
        published_at=datetime.now(UTC).isoformat(),
        table_digest=table_digest,
        champion_before=champion_before,
        store=store_identity(repo),
        probe_video_id=str(table["video_id"].min()) if len(table) else "",
    )
    make_live(repo, live)
    log.info(
        "published related-videos v%s (%s videos) into the %s copy; it is live",
        version,
        f"{videos:,}",
        color,
    )
    return live


def read_related(
    repo: Path, video_ids: Sequence[str], live: Live | None = None, store=None
) -> dict[str, RelatedList | None]:
    """Each video's live related list, None for a video the live table does not hold. `store`: an
    open FeatureStore on `repo` to reuse (see feature_store.online_features)."""
    if live is None:
        # A read that overlaps two publishes may find its copy being rewritten: read again
        # through the pointer that replaced it.
        first = read_live(repo)
        answer = read_related(repo, video_ids, first, store) if first else None
        latest = read_live(repo)
        if latest is not None and latest != first:
            answer = read_related(repo, video_ids, latest, store)
        if answer is None:
            raise NothingPublished(f"{repo}: no related table is published yet; run publish first")
        return answer
    ids = [str(v) for v in video_ids]
    refs = [f"{view_name(live.color)}:{field}" for field in FIELDS]
    found = feature_store.online_features(repo, refs, [{"video_id": v} for v in ids], store)
    answer: dict[str, RelatedList | None] = {}
    for row in found.to_dict("records"):
        video_id = str(row["video_id"])
        if str(row.get("table_version")) != live.version or row.get("related_video_ids") is None:
            answer[video_id] = None
            continue
        answer[video_id] = RelatedList(
            video_id,
            [str(v) for v in row["related_video_ids"]],
            [float(v) for v in row["scores"]],
            [str(v) for v in row["reasons"]],
            live.version,
        )
    return answer
