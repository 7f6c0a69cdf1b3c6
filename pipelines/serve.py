"""The related-video service: GET /related/{video_id} answers the live list from Feast's online
store, GET /health says what is live; a newly published table is served at once, no restart.

What the service cannot read (pointer, Feast registry, online store) is a 503 with the reason,
never a 500, and no answer names a path on the server: the details go to the server's log.
"""

# No `from __future__ import annotations`: FastAPI evaluates the endpoints' annotations, and
# they refer to create_app's locals (max_n).
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pipelines import feature_store, online
from pipelines.broken import BrokenState
from pipelines.config import Config
from pipelines.data.contract import ID_PATTERN, ID_WORDS
from pipelines.explorer import ExplorerSettings, add_pages, explorer_settings
from pipelines.http_limits import uvicorn_settings
from pipelines.online import Live, NothingPublished, RelatedList

log = logging.getLogger(__name__)

# A well-formed video id is the contract's (the input gate refuses any other): any other id is
# refused with 422 before the store is asked. A well-formed id the live table does not hold is a
# 404.
VIDEO_ID = ID_PATTERN


# What a request hears before the first publish (the log names the feature repo).
NOT_PUBLISHED = "no related table is published yet; run publish first"
# /health reads this id when the pointer names no probe video (a pointer from before they did):
# an unknown id still goes through the registry and the online store.
FALLBACK_PROBE = "health-probe"
REGISTRY_ATTEMPTS = 3  # `feast apply` rewrites the registry in place: a read may catch it
REGISTRY_PAUSE_S = 0.05


class UnknownVideo(ValueError):
    """The live related table holds no list for this video."""


class Unavailable(RuntimeError):
    """The service cannot answer from the live table now; the message says why, without paths."""


class CannotListen(RuntimeError):
    """`serve` cannot listen on serving.host:serving.port (taken, or not an address here)."""


class RelatedVideo(BaseModel):
    rank: int
    video_id: str
    score: float
    reason: str


class RelatedAnswer(BaseModel):
    video_id: str
    version: str
    related: list[RelatedVideo]


class Health(BaseModel):
    status: str
    version: str
    color: str
    videos: int
    published_at: str


class LiveReader:
    """Reads related lists through the live pointer. The pointer (and a Feast store opened on
    the repo, kept for reuse) is read again only when the pointer file changes, which a publish
    does with one rename: a new table is served from the next request on.

    A store replaced (a new pointer, or a failed read) is closed, with its online store's
    connection, once the last request reading through it is done: a long-lived worker keeps
    one connection, however many publishes it sees."""

    def __init__(self, repo: Path) -> None:
        self.repo = Path(repo)
        self._pointer = online.related_folder(self.repo) / online.LIVE_FILE
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._state: tuple[Live, object] | None = None
        self._readers: dict[int, int] = {}  # id(store): requests reading through it now
        self._retired: list[object] = []  # replaced stores still being read: closed when idle

    @contextmanager
    def reading(self) -> Iterator[tuple[Live, object]]:
        """The live pointer and the open store, which stays open until the block ends;
        NothingPublished before the first publish, Unavailable if the pointer cannot be read."""
        live, store = self._acquire()
        try:
            yield live, store
        finally:
            with self._lock:
                left = self._readers.pop(id(store)) - 1
                if left:
                    self._readers[id(store)] = left
                self._close_idle()

    def _acquire(self) -> tuple[Live, object]:
        try:
            stat = os.stat(self._pointer)
        except FileNotFoundError:
            raise NothingPublished(NOT_PUBLISHED) from None
        # Stat before reading: a pointer replaced in between is read again on the next call.
        signature = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        with self._lock:
            if signature != self._signature or self._state is None:
                try:
                    live = online.read_live(self.repo)
                except (OSError, ValueError, TypeError, BrokenState) as error:
                    log.warning("%s: cannot read the live pointer: %s", self._pointer, error)
                    raise Unavailable(
                        "the live pointer (live.json) cannot be read; run `related-videos "
                        "repair`, or publish again, to rewrite it"
                    ) from error
                if live is None:
                    log.warning("%s: the pointer is for another online store", self._pointer)
                    raise NothingPublished(NOT_PUBLISHED)
                # A fresh store also picks up a registry that `feast apply` changed.
                self._replace((live, feature_store.open_store(self.repo)), signature)
                log.info("serving related-videos v%s (%s copy)", live.version, live.color)
            live, store = self._state
            self._readers[id(store)] = self._readers.get(id(store), 0) + 1
        return live, store

    def _replace(self, state: tuple[Live, object] | None, signature: tuple | None) -> None:
        """Install `state` (None: forget the store); retire the store it replaces. Under the
        lock."""
        if self._state is not None:
            self._retired.append(self._state[1])
        self._state, self._signature = state, signature
        self._close_idle()

    def _close_idle(self) -> None:
        """Close the retired stores no request reads through any more. Under the lock."""
        busy = [store for store in self._retired if id(store) in self._readers]
        for store in self._retired:
            if id(store) not in self._readers:
                feature_store.close_store(store)
        self._retired = busy

    def related(self, video_id: str) -> RelatedList | None:
        with self.reading() as (live, store):
            return self._related(live, store, video_id)

    def _related(self, live: Live, store: object, video_id: str) -> RelatedList | None:
        try:
            return online.read_related(self.repo, [video_id], live=live, store=store)[video_id]
        except Exception as error:  # whatever Feast raises: the store, not the request, failed
            raise self._unavailable(store, error) from error

    def check(self) -> Live:
        """Read what /related reads, now: the pointer, the live copy's definition in the Feast
        registry (from the registry file, not a cached copy) and the row of the pointer's probe
        video. The live pointer if all of it reads; else Unavailable with the reason."""
        with self.reading() as (live, store):
            for attempt in range(1, REGISTRY_ATTEMPTS + 1):
                try:
                    store.registry.get_feature_view(
                        online.view_name(live.color), store.project, allow_cache=False
                    )
                    break
                except Exception as error:
                    if attempt == REGISTRY_ATTEMPTS:
                        raise self._unavailable(store, error, registry=True) from error
                    time.sleep(REGISTRY_PAUSE_S * attempt)
            probe = live.probe_video_id or FALLBACK_PROBE
            if self._related(live, store, probe) is None and live.probe_video_id:
                raise Unavailable(
                    f"the live copy ({live.color}) holds no row of v{live.version} for {probe}, "
                    "a video of its table; publish again"
                )
        return live

    def _unavailable(self, store: object, error: Exception, registry: bool = False) -> Unavailable:
        """Log the error in full, forget the open store (the next request opens a new one, so a
        replaced store or registry file is picked up) and say what failed."""
        from google.protobuf.message import DecodeError

        log.warning("%s: the live table cannot be read", self.repo, exc_info=error)
        with self._lock:
            if self._state is not None and self._state[1] is store:
                self._replace(None, None)
        if registry or isinstance(error, DecodeError) or "NotFound" in type(error).__name__:
            return Unavailable(
                "the Feast registry cannot be read; run `feast apply` in the feature repo, then "
                "publish again"
            )
        return Unavailable(
            f"the online store cannot be read ({type(error).__name__}); check it, then publish "
            "again"
        )


def create_app(
    repo: Path,
    max_n: int,
    default_n: int,
    docs: bool = False,
    explorer: ExplorerSettings | None = None,
) -> FastAPI:
    """The service over the feature repo `repo`; `?n=` is 1..max_n, default_n when absent.
    `docs`: serve /docs, /redoc and /openapi.json (serving.docs; off by default). `explorer`:
    the HTML pages as well (/, /videos/{video_id}, /compare; pipelines/explorer.py)."""
    if not 1 <= default_n <= max_n:
        raise ValueError(f"default n {default_n} is not within 1..{max_n}")
    reader = LiveReader(repo)
    app = FastAPI(
        title="related-videos",
        summary="The 'watch next' list of a video, from the live related-video table.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )

    @app.exception_handler(NothingPublished)
    async def nothing_published(request: Request, error: NothingPublished) -> JSONResponse:
        # A fixed text: the error's own message may name the feature repo's path.
        return JSONResponse(status_code=503, content={"detail": NOT_PUBLISHED})

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.get("/related/{video_id}", response_model=RelatedAnswer)
    def related(
        video_id: Annotated[
            str,
            PathParameter(
                pattern=VIDEO_ID,
                description=ID_WORDS,
            ),
        ],
        n: Annotated[
            int | None,
            Query(ge=1, le=max_n, description=f"list length, 1..{max_n} (default {default_n})"),
        ] = None,
    ) -> RelatedAnswer:
        found = reader.related(video_id)
        if found is None:
            raise HTTPException(
                status_code=404, detail=f"video {video_id!r} is not in the live related table"
            )
        return RelatedAnswer(
            video_id=video_id, version=found.version, related=entries(found, n or default_n)
        )

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"description": "the live table cannot be read; `detail` says why"}},
    )
    def health() -> Health:
        live = reader.check()
        return Health(
            status="ok",
            version=live.version,
            color=live.color,
            videos=live.videos,
            published_at=live.published_at,
        )

    if explorer is not None:
        add_pages(app, reader, explorer)
    return app


def entries(found: RelatedList, n: int) -> list[RelatedVideo]:
    """The first n of a list, ranked from 1."""
    triples = zip(found.related_video_ids, found.scores, found.reasons, strict=True)
    return [
        RelatedVideo(rank=rank, video_id=video_id, score=score, reason=reason)
        for rank, (video_id, score, reason) in enumerate(triples, start=1)
        if rank <= n
    ]


# Where run_server leaves create_app's arguments for uvicorn's worker processes, which build
# the app from an import string (app_from_environment) and not from an object.
APP_ENVIRONMENT = "RELATED_VIDEOS_SERVE"


def run_server(config: Config) -> None:
    """Serve the data set's feature repo with uvicorn on serving.host:serving.port, in
    serving.workers processes."""
    import uvicorn

    from pipelines.workspace import feature_repo_dir

    repo = feature_repo_dir(config)
    settings = config.serving
    if settings.workers < 1:
        raise ValueError(f"serving.workers is {settings.workers}: at least 1 is needed")
    arguments = {
        "repo": str(repo),
        "max_n": settings.max_n,
        "default_n": min(config.merge.top_n, settings.max_n),
        "docs": settings.docs,
        "explorer": dataclasses.asdict(explorer_settings(config)),
    }
    app = app_from_arguments(arguments)
    check_can_listen(settings.host, settings.port)
    if online.read_live(repo) is None:
        log.warning("%s: nothing is published yet; /related answers 503 until it is", repo)
    log.info(
        "related videos of %s on http://%s:%d/related/{video_id} (health: /health, pages: /), "
        "%d worker(s)",
        *(repo, settings.host, settings.port, settings.workers),
    )
    where = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        **uvicorn_settings(settings.max_header_bytes),
    }
    try:
        if settings.workers == 1:
            uvicorn.run(app, **where)
            return
        os.environ[APP_ENVIRONMENT] = json.dumps(arguments)
        uvicorn.run(
            f"{__name__}:app_from_environment", factory=True, workers=settings.workers, **where
        )
    except SystemExit as stopped:
        # uvicorn exits with 3 when it cannot start (its STARTUP_FAILURE), the code this
        # command line keeps for a failed gate: a port taken between the check and the bind.
        if stopped.code == uvicorn.config.STARTUP_FAILURE:
            raise CannotListen(
                f"serving.host:serving.port {settings.host}:{settings.port}: uvicorn could not "
                "start listening there (see its message above)"
            ) from None
        raise


def check_can_listen(host: str, port: int) -> None:
    """CannotListen, naming the keys, if nothing can listen on host:port now (the port is taken,
    the host is no address of this machine)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as attempt:
            attempt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            attempt.bind(address)
    except OSError as error:
        raise CannotListen(
            f"serving.host:serving.port {host}:{port}: cannot listen there "
            f"({error.strerror or error}); stop what holds the port or choose another one, "
            "e.g. --set serving.port=8001"
        ) from None


def app_from_arguments(arguments: dict) -> FastAPI:
    return create_app(
        Path(arguments["repo"]),
        arguments["max_n"],
        arguments["default_n"],
        docs=bool(arguments.get("docs", False)),
        explorer=ExplorerSettings(**arguments["explorer"]) if arguments.get("explorer") else None,
    )


def app_from_environment() -> FastAPI:
    """create_app with the arguments run_server left in the environment (a uvicorn worker)."""
    return app_from_arguments(json.loads(os.environ[APP_ENVIRONMENT]))


def related_lines(config: Config, video_id: str, n: int | None = None) -> str:
    """The live list of one video as text, for `related-videos related <video_id> [-n N]`.
    NothingPublished before any publish; UnknownVideo for an id the live table does not hold."""
    if n is not None and n < 1:
        raise ValueError(f"-n {n}: the list length must be at least 1")
    from pipelines.workspace import feature_repo_dir

    repo = feature_repo_dir(config)
    live = online.read_live(repo)
    if live is None:
        raise NothingPublished(f"{repo}: no related table is published yet; run publish first")
    found = online.read_related(repo, [video_id], live=live)[video_id]
    if found is None:
        raise UnknownVideo(
            f"video {video_id!r} is not in the live related table "
            f"(v{live.version}, {live.videos:,} videos, {repo})"
        )
    shown = entries(found, n or config.merge.top_n)
    lines = [
        f"related videos of {video_id} under v{live.version} "
        f"({live.color} copy, live since {live.published_at}):"
    ]
    lines += [
        f"  {entry.rank:>3}. {entry.video_id}  {entry.score:.3f}  {entry.reason}" for entry in shown
    ]
    return "\n".join(lines)
