"""The explorer pages, served beside /related by the same app: search the catalog, a video's live
list with why each row is there, and what one registered table changes against another.

Server-rendered Jinja2 (pipelines/templates/, autoescaped: ids and attribute values are user
data), nothing loaded from elsewhere. An unknown video or version is a 404 page; what cannot be
read (the live table, the MLflow registry) is a 503 page with the reason, never a server path.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines import feature_store, list_diff
from pipelines.config import Config
from pipelines.data.contract import ID_PATTERN
from pipelines.online import NothingPublished
from pipelines.workspace import TABLE_FILE

log = logging.getLogger(__name__)

# pipelines/registry.py's name, repeated here: importing that module loads MLflow.
MODEL_NAME = "related-videos"
OFFLINE = "offline_"  # version tags holding a version's offline metrics (pipelines/promote.py)
CONTRIBUTION = "contribution_"  # the related table's per-objective columns (models/merge.py)
TEMPLATES = Path(__file__).resolve().parent / "templates"
VERSION = re.compile(r"^[0-9]{1,12}$")
REPORT_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(html|png)$")  # the evaluation report's own files
PERCENT = 100.0
API_PATHS = ("/related/", "/health", "/docs", "/redoc", "/openapi.json")  # JSON, not pages


class PageError(Exception):
    """A page that cannot be shown: its status, a title and what to say (no server paths)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass(frozen=True)
class ExplorerSettings:
    tracking_uri: str
    report_dir: str  # the offline evaluation's report folder
    mlflow_ui: str
    max_n: int
    search_results: int
    compare_videos: int
    histogram_bins: int
    cached_tables: int


def explorer_settings(config: Config) -> ExplorerSettings:
    """The pages' settings from the configuration (serving.explorer, the workspace, MLflow)."""
    from pipelines import workspace

    settings = config.serving.explorer
    # As pipelines/tracking.py chooses it, without importing MLflow at startup.
    uri = (
        config.mlflow.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI", "")
        or f"sqlite:///{config.workspace.resolve() / 'mlflow.db'}"
    )
    return ExplorerSettings(
        tracking_uri=uri,
        report_dir=str(workspace.evaluation_report_dir(config)),
        mlflow_ui=settings.mlflow_ui.rstrip("/"),
        max_n=config.serving.max_n,
        search_results=settings.search_results,
        compare_videos=settings.compare_videos,
        histogram_bins=settings.histogram_bins,
        cached_tables=settings.cached_tables,
    )


class Catalog:
    """The videos' attributes, from the feature repo's video_attributes source; read again when
    the features step replaces the file."""

    def __init__(self, repo: Path) -> None:
        self.path = Path(repo) / "data" / "sources" / feature_store.SOURCE_FILES["video_attributes"]
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._frames: tuple[pd.DataFrame, pd.DataFrame] | None = None

    def _load(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(attributes indexed by video_id, long form: video_id, attribute, value, lower)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            empty = pd.DataFrame(columns=["video_id", "attribute", "value", "lower"])
            return pd.DataFrame(index=pd.Index([], name="video_id")), empty
        signature = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        with self._lock:
            if signature != self._signature or self._frames is None:
                frame = pd.read_parquet(self.path)
                frame["video_id"] = frame["video_id"].astype(str)
                columns = [
                    c for c in frame.columns if c not in ("video_id", feature_store.TIMESTAMP)
                ]
                wide = frame.set_index("video_id")[columns]
                parts = [
                    frame[["video_id", column]]
                    .explode(column)
                    .dropna()
                    .rename(columns={column: "value"})
                    .assign(attribute=column)
                    for column in columns
                ]
                long = pd.concat(
                    [*parts, pd.DataFrame(columns=["video_id", "value", "attribute"])],
                    ignore_index=True,
                )
                long["value"] = long["value"].astype(str)
                long["lower"] = long["value"].str.lower()
                self._frames, self._signature = (wide, long), signature
            return self._frames

    def describe(self, video_id: str) -> dict[str, list[str]] | None:
        """Attribute -> values of one video; None for a video the catalog does not hold."""
        wide, _ = self._load()
        if video_id not in wide.index:
            return None
        return {column: _values(value) for column, value in wide.loc[video_id].items()}

    def search(self, query: str, limit: int) -> tuple[list[dict], int]:
        """Videos whose id or an attribute value contains `query` (any case): exact matches
        first; at most `limit` of them, and how many matched in all."""
        wanted = query.strip().lower()
        if not wanted:
            return [], 0
        wide, long = self._load()
        ids = pd.Series(wide.index, index=wide.index)
        by_id = ids[ids.str.lower().str.contains(wanted, regex=False)]
        by_value = long[long["lower"].str.contains(wanted, regex=False)]
        hits: dict[str, dict] = {}
        for video_id in sorted(by_id):
            exact = video_id.lower() == wanted
            hits[video_id] = {"video_id": video_id, "matched": ["id"], "exact": exact}
        ordered = by_value.assign(exact=by_value["lower"] == wanted).sort_values(
            ["exact", "video_id"], ascending=[False, True], kind="stable"
        )
        for row in ordered.itertuples():
            hit = hits.setdefault(
                row.video_id, {"video_id": row.video_id, "matched": [], "exact": row.exact}
            )
            hit["matched"].append(f"{row.attribute}={row.value}")
            hit["exact"] = hit["exact"] or row.exact
        # Exact matches (the id, or a whole value) first, each group as found.
        ranked = sorted(hits.values(), key=lambda hit: not hit["exact"])
        return ranked[:limit], len(ranked)


@dataclass(frozen=True)
class Version:
    version: str
    aliases: list[str]
    created: str
    promotion: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)


class Registry:
    """The registered related-video tables, read from MLflow (explicit URIs: the service sets
    no global tracking state); each table is read once and kept, the newest few."""

    def __init__(self, settings: ExplorerSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._tables: OrderedDict[str, pd.DataFrame] = OrderedDict()

    def _client(self):
        import mlflow

        uri = self.settings.tracking_uri
        # An absent SQLite store would be created by the client: say there is none instead.
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            return None
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)

    def versions(self) -> list[Version]:
        """Every registered version, newest first; [] when nothing is registered."""
        from mlflow.exceptions import MlflowException

        try:
            client = self._client()
            if client is None:
                return []
            found = client.search_model_versions(f"name = '{MODEL_NAME}'")
            aliases = client.get_registered_model(MODEL_NAME).aliases if found else {}
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise self._unavailable(error) from error
        except Exception as error:  # whatever the store raises: it, not the request, failed
            raise self._unavailable(error) from error
        versions = [
            Version(
                version=str(v.version),
                aliases=sorted(a for a, held in aliases.items() if str(held) == str(v.version)),
                created=pd.Timestamp(v.creation_timestamp, unit="ms", tz="UTC").isoformat(
                    timespec="seconds"
                ),
                promotion=(v.tags or {}).get("promotion", ""),
                run_id=v.run_id or "",
                metrics={
                    key.removeprefix(OFFLINE): _number(value)
                    for key, value in (v.tags or {}).items()
                    if key.startswith(OFFLINE)
                },
            )
            for v in found
        ]
        return sorted(versions, key=lambda v: int(v.version), reverse=True)

    def version(self, version: str) -> Version | None:
        return next((v for v in self.versions() if v.version == version), None)

    def run_link(self, version: Version | None) -> str:
        """The MLflow UI's page of the run that registered `version`; "" if there is none."""
        if version is None or not version.run_id or not self.settings.mlflow_ui:
            return ""
        try:
            experiment = self._client().get_run(version.run_id).info.experiment_id
        except Exception as error:  # a deleted run: no link rather than no page
            log.warning("run %s of v%s: %s", version.run_id, version.version, error)
            return ""
        return f"{self.settings.mlflow_ui}/#/experiments/{experiment}/runs/{version.run_id}"

    def table(self, version: str) -> pd.DataFrame:
        """The related table registered as `version`, checked against its table_digest."""
        with self._lock:
            if version in self._tables:
                self._tables.move_to_end(version)
                return self._tables[version]
        table = self._download(version)
        with self._lock:
            self._tables[version] = table
            while len(self._tables) > self.settings.cached_tables:
                self._tables.popitem(last=False)
        return table

    def _download(self, version: str) -> pd.DataFrame:
        import mlflow

        from pipelines.registry import file_digest

        uri = self.settings.tracking_uri
        try:
            client = self._client()
            tags = client.get_model_version(MODEL_NAME, version).tags or {}
            # Not models:/ URIs: MLflow resolves those through its global registry URI.
            files = client.get_model_version_download_uri(MODEL_NAME, version)
            with tempfile.TemporaryDirectory() as folder:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=files, dst_path=folder, tracking_uri=uri
                )
                found = sorted(Path(local).rglob(TABLE_FILE))
                if not found:
                    raise PageError(503, "No table", f"v{version} has no {TABLE_FILE}")
                if tags.get("table_digest") and file_digest(found[0]) != tags["table_digest"]:
                    raise PageError(
                        503, "Damaged table", f"v{version}: its table does not match table_digest"
                    )
                return pd.read_parquet(found[0])
        except PageError:
            raise
        except Exception as error:
            raise self._unavailable(error) from error

    @staticmethod
    def _unavailable(error: Exception) -> PageError:
        log.warning("the MLflow registry cannot be read", exc_info=error)
        return PageError(
            503,
            "Registry unavailable",
            f"the MLflow model registry cannot be read ({type(error).__name__}); the server's "
            "log has the details",
        )


def add_pages(app: FastAPI, reader, settings: ExplorerSettings) -> None:
    """Mount the pages on `app`; `reader` is the service's LiveReader (pipelines/serve.py)."""
    from pipelines.serve import Unavailable

    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    catalog = Catalog(reader.repo)
    registry = Registry(settings)

    def page(name: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(environment.get_template(name).render(**context), status_code=status)

    def live_pointer():
        """(the live pointer or None, a problem to show or "")."""
        try:
            with reader.reading() as (live, _):
                return live, ""
        except NothingPublished:
            return None, "no related table is published yet"
        except Unavailable as error:
            return None, str(error)

    def registered() -> tuple[list[Version], str]:
        """(the registered versions, a problem to show or ""): a page still shows the rest."""
        try:
            return registry.versions(), ""
        except PageError as error:
            return [], error.message

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> HTMLResponse:
        return page("error.html", error.status, title=error.title, message=error.message)

    @app.exception_handler(StarletteHTTPException)
    async def not_found(request: Request, error: StarletteHTTPException) -> Response:
        """A page for a path no route knows; the API's own answers stay JSON."""
        if error.status_code == 404 and not request.url.path.startswith(API_PATHS):
            return page("error.html", 404, title="Not found", message="no such page here")
        return await http_exception_handler(request, error)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(q: str = "") -> HTMLResponse:
        live, problem = live_pointer()
        versions, registry_problem = registered()
        live_version = next((v for v in versions if live and v.version == live.version), None)
        report = Path(settings.report_dir) / "report.html"
        results, matched = catalog.search(q, settings.search_results)
        return page(
            "index.html",
            title="Related videos",
            live=live,
            problem=problem,
            run_link=registry.run_link(live_version),
            report_link="/reports/evaluation/report.html" if report.is_file() else "",
            query=q,
            results=results,
            matched=matched,
            versions=versions,
            registry_problem=registry_problem,
        )

    @app.get("/videos/{video_id}", response_class=HTMLResponse, include_in_schema=False)
    def video(video_id: str) -> HTMLResponse:
        if not re.fullmatch(ID_PATTERN, video_id):
            raise PageError(404, "Unknown video", f"no video {video_id!r} here")
        attributes = catalog.describe(video_id)
        live, problem = live_pointer()
        found = None
        if live is not None:
            try:
                found = reader.related(video_id)
            except NothingPublished:
                problem = "no related table is published yet"
            except Unavailable as error:
                problem = str(error)
        if attributes is None and found is None:
            raise PageError(404, "Unknown video", f"no video {video_id!r} in the catalog")
        versions, note = registered()
        rows, objectives = [], []
        if found is not None:
            contributions = {}
            try:
                contributions = _contributions(registry.table(found.version), video_id)
            except PageError as error:
                note = f"no per-objective contributions: {error.message}"
                log.info("%s: %s", video_id, note)
            objectives = sorted({name for values in contributions.values() for name in values})
            rows = _list_rows(found, attributes or {}, catalog, contributions, objectives)
        return page(
            "video.html",
            title=video_id,
            video_id=video_id,
            attributes=attributes,
            live=live,
            problem=problem,
            note=note,
            rows=rows,
            objectives=objectives,
            versions=[v for v in versions if not live or v.version != live.version],
        )

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare(a: str = "", b: str = "", video: str = "", n: str = "") -> HTMLResponse:
        """Table b against table a at overlap@n; n: the tables' list length unless given."""
        if n and (not n.isdigit() or not 1 <= int(n) <= settings.max_n):
            raise PageError(400, "Bad list length", f"n must be 1..{settings.max_n}")
        known = {v.version: v for v in registry.versions()}
        for name, version in (("a", a), ("b", b)):
            if not VERSION.fullmatch(version) or version not in known:
                raise PageError(
                    404, "Unknown version", f"{name}={version!r} is no registered version"
                )
        old, new = registry.table(a), registry.table(b)
        top = int(n) if n else min(_list_length(old, new), settings.max_n)
        return page(
            "compare.html",
            title=f"v{a} against v{b}",
            a=known[a],
            b=known[b],
            n=top,
            **_comparison(old, new, top, video, settings),
            metrics=_metric_changes(known[a].metrics, known[b].metrics),
        )

    @app.get("/reports/evaluation/{name}", include_in_schema=False)
    def evaluation_report(name: str) -> FileResponse:
        path = Path(settings.report_dir) / name
        if not REPORT_FILE.fullmatch(name) or not path.is_file():
            raise PageError(404, "No report", "no such file of the offline evaluation's report")
        return FileResponse(path)


def _list_length(*tables: pd.DataFrame) -> int:
    """The longest list of any of the tables (their N), at least 1."""
    return max([int(table["rank"].max()) for table in tables if len(table)], default=1)


def _contributions(table: pd.DataFrame, video_id: str) -> dict[str, dict[str, float]]:
    """related_video_id -> objective -> contribution, for one video of a registered table."""
    columns = [c for c in table.columns if c.startswith(CONTRIBUTION)]
    rows = table[table["video_id"] == video_id]  # ids are strings in a registered table
    return {
        str(row["related_video_id"]): {
            c.removeprefix(CONTRIBUTION): float(row[c]) for c in columns if pd.notna(row[c])
        }
        for _, row in rows.iterrows()
    }


def _list_rows(found, attributes, catalog, contributions, objectives) -> list[dict]:
    """The rows of a live list as the video page shows them: bars scaled to the list's largest
    contribution, the attributes shared with the source video."""
    largest = max(
        (abs(v) for values in contributions.values() for v in values.values()), default=0.0
    )
    mine = {(name, value) for name, values in attributes.items() for value in values}
    rows = []
    triples = zip(found.related_video_ids, found.scores, found.reasons, strict=True)
    for rank, (related, score, reason) in enumerate(triples, start=1):
        theirs = catalog.describe(related) or {}
        shared = [
            f"{name}={value}"
            for name, values in theirs.items()
            for value in values
            if (name, value) in mine
        ]
        values = contributions.get(related, {})
        bars = [
            {
                "objective": name,
                "value": values[name],
                "width": PERCENT * abs(values[name]) / largest if largest else 0.0,
                "negative": values[name] < 0,
            }
            for name in objectives
            if name in values
        ]
        rows.append(
            {
                "rank": rank,
                "video_id": related,
                "attributes": theirs,
                "score": score,
                "bars": bars,
                "shared": shared,
                "reason": reason,
            }
        )
    return rows


def _comparison(
    a: pd.DataFrame, b: pd.DataFrame, n: int, video: str, settings: ExplorerSettings
) -> dict:
    """What the compare page shows of two tables at overlap@n."""
    frame = list_diff.overlap_by_video(a, b, n)
    both = frame[frame["in_a"] & frame["in_b"]]
    shown = frame.head(settings.compare_videos)
    if video and video in set(frame["video_id"]):
        shown = pd.concat([frame[frame["video_id"] == video], shown]).drop_duplicates("video_id")
    moves = list_diff.entered_and_left(a, b, n, list(shown["video_id"]))
    bins = list_diff.histogram(both["overlap"], settings.histogram_bins)
    tallest = max((count for _, _, count in bins), default=0)
    return {
        "overlap": float(both["overlap"].mean()) if len(both) else float("nan"),
        "both": len(both),
        "only_a": int((frame["in_a"] & ~frame["in_b"]).sum()),
        "only_b": int((frame["in_b"] & ~frame["in_a"]).sum()),
        "changed": float(frame["changed"].mean()) if len(frame) else 0.0,
        "bins": [
            {"low": low, "high": high, "count": count, "height": count / tallest if tallest else 0}
            for low, high, count in bins
        ],
        "video": video,
        "videos": [
            {
                "video_id": row.video_id,
                "overlap": row.overlap,
                "in_a": row.in_a,
                "in_b": row.in_b,
                "entered": moves[row.video_id][0],
                "left": moves[row.video_id][1],
            }
            for row in shown.itertuples()
        ],
    }


def _metric_changes(a: dict[str, float], b: dict[str, float]) -> list[dict]:
    """Per offline metric either version has: both values and b's relative change."""
    from models.experiment import LOWER_IS_BETTER

    rows = []
    for metric in sorted(set(a) | set(b)):
        old, new = a.get(metric, np.nan), b.get(metric, np.nan)
        change = (new - old) / abs(old) if old and np.isfinite(old) else np.nan
        rows.append(
            {
                "metric": metric,
                "a": old,
                "b": new,
                "change": change,
                "lower_is_better": metric in LOWER_IS_BETTER,
            }
        )
    return rows


def _values(value) -> list[str]:
    """An attribute cell as a list of strings: [] for a missing one."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
