"""Independent fits of stage 2 (the coordinating network's folds, the objectives' two-tower
models) in worker processes, one thread each, with progress lines and an estimate of the rest.

With one worker the jobs run in this process, one after the other, and give the same results:
every job seeds itself, and a fit on one thread gives the same numbers as one on several here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import mlflow

log = logging.getLogger(__name__)
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def worker_count(configured: int) -> int:
    """`training.workers`: that many processes, 0 for one per core of this machine."""
    return configured if configured > 0 else len(os.sched_getaffinity(0))


def _start_worker(level: int) -> None:
    """Each worker: single-threaded BLAS and TensorFlow (the workers share the cores), and the
    parent's log level and format (spawned processes start without either)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


class JobPool:
    """Runs `(function, arguments)` jobs, in worker processes when there are several workers
    (started once, on first use, and reused)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> JobPool:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if self._executor is None:
            return
        if kind is not None:
            # A failure or Ctrl-C here: stop the fits still running instead of waiting for them
            # (the executor has no public way to; its processes are in `_processes`).
            for process in list((self._executor._processes or {}).values()):
                process.terminate()
        self._executor.shutdown(wait=kind is None, cancel_futures=True)
        self._executor = None

    def run(
        self,
        label: str,
        jobs: Sequence[tuple[Callable[..., Any], tuple]],
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """Every job's result in order (see `Batch.collect`)."""
        return self.start(label, jobs).collect(on_result)

    def start(self, label: str, jobs: Sequence[tuple[Callable[..., Any], tuple]]) -> Batch:
        """Hand the jobs to the workers and return at once (with one worker they run in
        `collect`), so this process can do other work meanwhile."""
        executor = self._start() if self.workers > 1 and len(jobs) > 1 else None
        return Batch(label, list(jobs), self.workers, executor)

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: this process has TensorFlow's thread pools running already.
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(logging.getLogger().getEffectiveLevel(),),
            )
        return self._executor


class Batch:
    """Jobs handed to a pool; `collect` waits for them."""

    def __init__(
        self,
        label: str,
        jobs: list[tuple[Callable[..., Any], tuple]],
        workers: int,
        executor: ProcessPoolExecutor | None,
    ) -> None:
        self.label, self.jobs, self.workers = label, jobs, workers
        self.started = time.perf_counter()
        self.futures: dict[Future, int] = {}
        if executor is not None:
            self.futures = {executor.submit(f, *args): i for i, (f, args) in enumerate(jobs)}

    def collect(self, on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Every job's result in job order. `on_result(i, result)` is called in job order as
        soon as job i and every job before it are done (what it logs comes out in one order
        however the jobs finish); a failed job's exception is raised here."""
        progress = Progress(self.label, len(self.jobs), self.workers, self.started)
        results: dict[int, Any] = {}
        delivered = 0

        def deliver() -> None:
            nonlocal delivered
            while delivered in results:
                if on_result is not None:
                    on_result(delivered, results[delivered])
                delivered += 1

        if not self.futures:
            for i, (function, arguments) in enumerate(self.jobs):
                results[i] = function(*arguments)
                progress.done()
                deliver()
            return [results[i] for i in range(len(self.jobs))]
        try:
            pending = set(self.futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=self.futures.__getitem__):
                    results[self.futures[future]] = future.result()
                    progress.done()
                deliver()
        except BaseException:
            for future in self.futures:
                future.cancel()
            raise
        return [results[i] for i in range(len(self.jobs))]


class Progress:
    """`label: k/n done in 1m05s, about 40s left`: the estimate is the mean time per finished
    job times the jobs left over the workers. Also the share done as an MLflow metric."""

    def __init__(self, label: str, total: int, workers: int, started: float) -> None:
        self.label, self.total, self.workers = label, total, max(1, workers)
        self.finished = 0
        self.started = started

    def done(self, detail: str = "") -> None:
        """One more finished; logs `label: k/n (detail) done in ..., about ... left`."""
        self.finished += 1
        elapsed = time.perf_counter() - self.started
        left = self.total - self.finished
        # Jobs run `workers` at a time: the time per job seen so far is elapsed * workers / k.
        rest = elapsed * min(self.workers, self.finished) / self.finished * left / self.workers
        log.info(
            "%s: %d/%d%s done in %s%s",
            self.label,
            self.finished,
            self.total,
            f" ({detail})" if detail else "",
            duration(elapsed),
            f", about {duration(rest)} left" if left else "",
        )
        if mlflow.active_run() is not None:
            key = "progress_" + "".join(c if c.isalnum() else "_" for c in self.label)
            mlflow.log_metric(key, self.finished / self.total, step=self.finished)


def duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
