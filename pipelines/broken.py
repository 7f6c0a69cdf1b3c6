"""Broken workspace files: the error that names the file, what is wrong with it and how to
recover (the command line's exit code 6), and the recognition of such states in library errors.

Known states: a workspace this user cannot write, a damaged MLflow database (`mlflow.db`), a
damaged Feast registry (`registry.db`), a damaged live pointer (`live.json`).
"""

from __future__ import annotations

import errno
from pathlib import Path

READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


class BrokenState(RuntimeError):
    """A file of the workspace is unreadable or unwritable; the message says which, what is
    wrong and how to recover."""


def read_only(path: Path | str, workspace: Path | str, reason: str) -> BrokenState:
    """`path` of the workspace cannot be written."""
    return BrokenState(
        f"{path}: cannot be written ({reason}): the workspace {workspace} is read-only for this "
        f"user. Make it writable (e.g. `chmod -R u+w {workspace}`, or run as its owner), or "
        "point --workspace at a writable folder; `related` and `serve` only read and work as "
        "they are."
    )


def damaged_pointer(path: Path | str, error: Exception) -> BrokenState:
    return BrokenState(
        f"{path}: the live pointer is damaged ({type(error).__name__}: {error}); readers, "
        "publish and rollback cannot tell which table is live. Run `related-videos repair` to "
        "rewrite it from the model registry's champion (its table is published again)."
    )


def damaged_registry(path: Path | str, repo: Path | str, error: Exception) -> BrokenState:
    return BrokenState(
        f"{path}: the Feast registry is damaged ({type(error).__name__}: {error}). Run "
        "`related-videos repair` to rebuild it from the feature definitions (it keeps the "
        f"damaged file as registry.db.broken and runs `feast apply` in {repo}); the published "
        "rows in the online store are kept."
    )


def damaged_tracking(path: Path | str, error: Exception) -> BrokenState:
    return BrokenState(
        f"{path}: the MLflow tracking database is damaged (SQLite: {error}); it holds the runs "
        "and the model registry (the champion). Restore it from a backup, or move it aside "
        f"(`mv {path} {path}.broken`) and run `related-videos main` to start a new one; the "
        "live table is still served meanwhile."
    )


def explain(
    error: BaseException, workspace: Path, repo: Path, tracking_uri: str = ""
) -> BrokenState | None:
    """The broken state `error` (or an error it was raised from) shows, or None: a read-only
    file, a damaged SQLite database of MLflow's (`tracking_uri`), a damaged Feast registry of
    the feature repo `repo`."""
    from google.protobuf.message import DecodeError

    seen: set[int] = set()
    current: BaseException | None = error
    sqlalchemy_seen = False
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        sqlalchemy_seen |= type(current).__module__.startswith("sqlalchemy")
        if isinstance(current, BrokenState):
            return current
        if isinstance(current, OSError) and current.errno in READ_ONLY_ERRNOS:
            return read_only(current.filename or workspace, workspace, current.strerror or text)
        if isinstance(current, DecodeError):
            return damaged_registry(repo / "data" / "registry.db", repo, current)
        if type(current).__module__ == "sqlite3" and sqlalchemy_seen:
            database = _sqlite_path(tracking_uri) or workspace / "mlflow.db"
            if "readonly database" in text:
                return read_only(database, workspace, text)
            if "not a database" in text or "malformed" in text:
                return damaged_tracking(database, current)
        current = current.__cause__ or current.__context__
    return None


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None
