"""One writer per workspace: a command that writes holds an exclusive flock on
<workspace>/.run.lock, which records its pid and start time; a second writer is refused.

The kernel drops an flock when its holder dies, so a killed run leaves only the file's text
behind; that text (a pid no longer running) is taken over with a warning. A lock still held
although its recorded pid is gone (a forked child of a killed run keeps the file open) is taken
over by replacing the file. Read-only commands (`related`, `serve`) never take the lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.broken import READ_ONLY_ERRNOS, read_only
from pipelines.data.io import DataFileError

log = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"


class WorkspaceBusy(RuntimeError):
    """Another running process holds the workspace's run lock."""


@dataclass(frozen=True)
class Holder:
    """Who holds a workspace: the process, when it started (ISO time and, on Linux, its start
    tick, which tells a reused pid apart), and its command."""

    pid: int
    started_at: str
    command: str = ""
    start_ticks: str = ""

    def alive(self) -> bool:
        """Whether this process is still running (and is not another one with its pid)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: it exists
            return True
        state, ticks = _process_state(self.pid)
        if state == "Z":  # killed, not yet reaped by its parent
            return False
        return not (self.start_ticks and ticks and ticks != self.start_ticks)


def lock_path(workspace: Path) -> Path:
    return Path(workspace) / LOCK_FILE


def read_holder(workspace: Path) -> Holder | None:
    """What the lock file says (None when empty or unreadable): it may name a dead process."""
    try:
        return Holder(**json.loads(lock_path(workspace).read_text()))
    except (OSError, ValueError, TypeError):
        return None


@contextmanager
def workspace_lock(workspace: Path, command: str = "") -> Iterator[Holder]:
    """Hold the workspace's run lock for the block; WorkspaceBusy (naming the holder's pid, its
    start time and the workspace) if a running process holds it."""
    workspace = Path(workspace).resolve()
    path = lock_path(workspace)
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        descriptor = _acquire(workspace, path)
    except OSError as error:
        if error.errno in READ_ONLY_ERRNOS:
            raise read_only(path, workspace, error.strerror or str(error)) from error
        raise DataFileError(
            f"{path}: cannot create the workspace's run lock ({error.strerror or error}); "
            "the workspace must be writable"
        ) from error
    ticks = _process_state(os.getpid())[1]
    me = Holder(os.getpid(), datetime.now(UTC).isoformat(), command, ticks)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(asdict(me)) + "\n").encode(), 0)
        yield me
    finally:
        try:
            os.ftruncate(descriptor, 0)  # an empty file: nobody holds the workspace
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)


def _acquire(workspace: Path, path: Path) -> int:
    """An open, exclusively flocked descriptor on the lock file that is at `path` now."""
    for _ in range(10):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(workspace)
            if holder is None or holder.alive():
                os.close(descriptor)
                raise _busy(workspace, holder) from None
            # Held, but by no process the file names: a killed run's forked child keeps the
            # file open. Replace the file (only if it is still the one we found) and try again.
            log.warning(
                "%s: the run lock of pid %d (started at %s) is still held although that process "
                "is gone (a child of it keeps the file open); taking the workspace over",
                path,
                holder.pid,
                holder.started_at,
            )
            if _same_file(descriptor, path):
                path.unlink()
            os.close(descriptor)
            continue
        if not _same_file(descriptor, path):  # replaced meanwhile by a takeover: use the new one
            os.close(descriptor)
            continue
        holder = read_holder(workspace)
        if holder is not None and holder.pid != os.getpid():
            log.warning(
                "%s: taking over a stale run lock: pid %d (started at %s%s) stopped without "
                "releasing it (killed?); check that its outputs are complete",
                path,
                holder.pid,
                holder.started_at,
                f", {holder.command}" if holder.command else "",
            )
        return descriptor
    raise _busy(workspace, read_holder(workspace))


def _busy(workspace: Path, holder: Holder | None) -> WorkspaceBusy:
    who = (
        f"another run (pid {holder.pid}, started at {holder.started_at})"
        if holder is not None
        else "another run (pid unknown: it has not written the lock file yet)"
    )
    doing = f" ({holder.command})" if holder is not None and holder.command else ""
    return WorkspaceBusy(
        f"{who} holds the workspace {workspace}{doing}; wait until it finishes, or stop it and "
        "run again (one command writes to a workspace at a time; `related` and `serve` are "
        "not affected)"
    )


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)


def _process_state(pid: int) -> tuple[str, str]:
    """The process's state letter and start time in clock ticks since boot (Linux /proc);
    empty strings elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", ""
    # The command name (field 2) may hold spaces: count from after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("", "")
