"""Named points where a test may stop the pipeline dead (SIGKILL), to show that a crash at any of
them leaves the published table and the champion alias as they were.

Set RELATED_VIDEOS_KILL_AT=<point> in the environment of a run; nothing happens otherwise.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)
VARIABLE = "RELATED_VIDEOS_KILL_AT"


def checkpoint(point: str) -> None:
    """SIGKILL this process if the environment asks for it at `point`."""
    if os.environ.get(VARIABLE) == point:
        log.warning("%s=%s: killing this process (SIGKILL)", VARIABLE, point)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
