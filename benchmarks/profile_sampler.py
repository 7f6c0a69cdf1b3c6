"""A wall-clock stack sampler for the benchmarks: which library the main thread is in, over time.

A daemon thread reads the main thread's stack every `interval` seconds and files the time since
its last look under one category: the outermost frame of an orchestration library (Feast, MLflow,
Great Expectations) wins, else file I/O (Parquet, pandas readers and writers, model saving), else
imports, else compute (the method: pandas, NumPy, SciPy, implicit, TensorFlow). Time spent in C
code that holds the GIL is filed under the frame the thread is found in next, so categories are
estimates to a few percent; no dependency, and a cost far below 1% of the run.
"""

from __future__ import annotations

import sys
import threading
import time

CATEGORIES = ("feast", "mlflow", "great_expectations", "io", "imports", "compute")
ORCHESTRATION = ("feast", "mlflow", "great_expectations", "io")
_LIBRARIES = {
    "/site-packages/feast/": "feast",
    "/site-packages/mlflow/": "mlflow",
    "/site-packages/alembic/": "mlflow",  # MLflow's SQLite store migrations
    "/site-packages/sqlalchemy/": "mlflow",  # only MLflow's tracking store uses it here
    "/site-packages/great_expectations/": "great_expectations",
    "/pipelines/feature_store.py:apply": "feast",  # `feast apply`, run as a subprocess
}
_IO = (
    "/site-packages/pyarrow/parquet/",
    "/site-packages/pyarrow/dataset.py",
    "/site-packages/pandas/io/",
    "/site-packages/keras/src/saving/",
    "/site-packages/numpy/lib/_npyio_impl.py",
    "/pipelines/data/io.py",
)


def category_of(files: list[str]) -> str:
    """The category of one stack, `files` ("path:function") from the outermost frame in."""
    for name in files:
        for marker, category in _LIBRARIES.items():
            if marker in name:
                return category
    if any(marker in name for name in files for marker in _IO):
        return "io"
    if any(name.startswith("<frozen importlib") for name in files):
        return "imports"
    return "compute"


def site_of(files: list[str]) -> str:
    """Where a stack is, for the top list: the innermost frame of the project (models/,
    pipelines/) and the library below it, e.g. "pipelines/train.py:fit_stage2 > keras"."""
    ours, below = "", ""
    for name in files:
        path, _, function = name.rpartition(":")
        for root in ("/models/", "/pipelines/"):
            if root in path and "/site-packages/" not in path:
                ours, below = root.strip("/") + "/" + path.split(root, 1)[1] + ":" + function, ""
        if "/site-packages/" in path and ours and not below:
            below = path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    return f"{ours or 'outside the project'}" + (f" > {below}" if below else "")


class Sampler:
    """Start it in the thread to watch (the main thread); `samples` holds (time, seconds,
    category, site) tuples once stopped."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, str]] = []
        self._target = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, float, str]]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._target)
            files = []
            while frame is not None:
                files.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
                frame = frame.f_back
            now = time.perf_counter()
            files.reverse()
            self.samples.append((time.time(), now - last, category_of(files), site_of(files)))
            last = now


def shares(samples, start: float = float("-inf"), end: float = float("inf")) -> dict[str, float]:
    """Seconds per category of the samples taken between start and end (epoch seconds)."""
    seconds = dict.fromkeys(CATEGORIES, 0.0)
    for at, spent, category, _ in samples:
        if start <= at <= end:
            seconds[category] += spent
    return seconds


def top_sites(samples, count: int = 12) -> list[tuple[str, str, float]]:
    """The (site, category, seconds) where the most time went, most first."""
    spent: dict[tuple[str, str], float] = {}
    for _, seconds, category, site in samples:
        spent[site, category] = spent.get((site, category), 0.0) + seconds
    ranked = sorted(spent.items(), key=lambda item: -item[1])[:count]
    return [(site, category, seconds) for (site, category), seconds in ranked]
