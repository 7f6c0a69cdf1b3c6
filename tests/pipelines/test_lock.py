"""The workspace run lock with real processes: a second writer is refused with the holder named,
read-only commands pass, and a lock left by a killed run is taken over with a warning."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipelines.cli import EXIT_DATA, EXIT_LOCKED, main
from pipelines.lock import LOCK_FILE, WorkspaceBusy, read_holder, workspace_lock
from tests.conftest import REPO

HOLD = """
import sys, time
from pathlib import Path
from pipelines.lock import workspace_lock
with workspace_lock(Path(sys.argv[1]), "a test holder"):
    print("held", flush=True)
    time.sleep(120)
"""
# A process that keeps the lock file flocked (as a forked child of a killed run would) while
# the file names a pid that is gone.
ORPHAN = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


@contextmanager
def holder_process(script: str, argument: Path) -> Iterator[subprocess.Popen]:
    """`script` in its own Python process, once it printed "held"; killed at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(argument)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == "held", process.stderr.read()
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=20)


def dead_pid() -> int:
    """The pid of a process that has finished (and been reaped)."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=60)
    return finished.pid


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path, capsys):
    workspace = tmp_path / "workspace"
    with holder_process(HOLD, workspace) as other:
        holder = read_holder(workspace)
        assert holder.pid == other.pid and holder.command == "a test holder"
        # Any writing command, through the command line: its own exit code and message.
        for command in ("validate", "main", "publish"):
            assert main(["--workspace", str(workspace), command]) == EXIT_LOCKED, command
            err = capsys.readouterr().err
            assert (
                f"another run (pid {other.pid}, started at {holder.started_at}) holds the "
                f"workspace {workspace.resolve()}"
            ) in err
            assert "Traceback" not in err
        with pytest.raises(WorkspaceBusy, match=f"pid {other.pid}"), workspace_lock(workspace):
            pass
        # Read-only commands never take the lock: `related` answers (nothing is published).
        assert main(["--workspace", str(workspace), "related", "v000001"]) == EXIT_DATA
        assert "no related table is published yet" in capsys.readouterr().err
        assert read_holder(workspace).pid == other.pid
    # The holder gone (its lock released by the kernel), writers run again.
    assert main(["--workspace", str(workspace), "validate"]) == EXIT_DATA  # no input data
    assert "no such file" in capsys.readouterr().err


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
    workspace = tmp_path / "workspace"
    with holder_process(HOLD, workspace) as other:
        os.kill(other.pid, signal.SIGKILL)
        other.wait(timeout=20)
    left = read_holder(workspace)
    assert left is not None and left.pid == other.pid and not left.alive()  # the text remains
    caplog.set_level(logging.WARNING, logger="pipelines.lock")
    with workspace_lock(workspace, "the next run") as me:
        assert read_holder(workspace) == me and me.pid == os.getpid()
    assert f"taking over a stale run lock: pid {other.pid}" in caplog.text
    assert (workspace / LOCK_FILE).read_text() == ""  # released: nobody holds it


def test_a_lock_held_by_an_orphan_of_a_dead_run_is_taken_over(tmp_path, caplog):
    """The file names a pid that is gone, yet a process (a forked child of the killed run) still
    holds the flock: the file is replaced and the workspace taken over."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    path = workspace / LOCK_FILE
    gone = dead_pid()
    with holder_process(ORPHAN, path):
        started = "2026-01-01T00:00:00+00:00"
        path.write_text(json.dumps({"pid": gone, "started_at": started, "command": "x"}))
        caplog.set_level(logging.WARNING, logger="pipelines.lock")
        with workspace_lock(workspace, "the next run") as me:
            assert read_holder(workspace) == me
            # and a third writer is refused while this one holds it
            with pytest.raises(WorkspaceBusy, match=f"pid {me.pid}"), workspace_lock(workspace):
                pass
    assert f"the run lock of pid {gone} (started at {started}) is still held" in caplog.text


def test_a_live_holder_with_a_reused_pid_is_told_apart(tmp_path):
    """A pid that runs again, but another process (its start tick differs), holds nothing."""
    workspace = tmp_path / "workspace"
    with workspace_lock(workspace) as me:
        assert read_holder(workspace).alive()
        assert not type(me)(me.pid, me.started_at, "", str(int(me.start_ticks or 0) + 1)).alive()


def test_the_lock_waits_for_nothing(tmp_path):
    """Refusal is immediate: no waiting behind the holder."""
    workspace = tmp_path / "workspace"
    with holder_process(HOLD, workspace):
        started = time.monotonic()
        with pytest.raises(WorkspaceBusy), workspace_lock(Path(workspace)):
            pass
        assert time.monotonic() - started < 2.0
