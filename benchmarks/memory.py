"""Resident memory of the running process, read from /proc (Linux): what every benchmark reports
as its peak, and how a worker starts its peak afresh before the part it measures."""

from __future__ import annotations

from pathlib import Path


def memory_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Make VmHWM start again from the current resident set (Linux 4.0 and later)."""
    Path("/proc/self/clear_refs").write_text("5")
