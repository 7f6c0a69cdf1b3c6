"""A chaos run: `related-videos main` killed with SIGKILL at seeded random moments (anywhere in a
run, not only at step boundaries); after each kill the champion, live.json and the served lists
must agree, and a rerun must complete and leave them agreeing again.

`make chaos` runs 20 kills on the toy world (`python -m tests.chaos --kills 20`); the test suite
runs 3 (tests/pipelines/test_promote.py). Each round changes one setting so that the chain has
work to do: the merge's manual weights (merge onwards) and, every `deep_every` rounds, the
candidate cap (candidates onwards, training included).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from pipelines import online
from pipelines.config import load_config
from pipelines.registry import CHAMPION, MODEL_NAME
from pipelines.workspace import feature_repo_dir
from tests.conftest import SMALL_MODELS

REPO = Path(__file__).resolve().parents[1]
# The toy world with small networks and a tolerant promotion gate (as the promotion tests use);
# `main` evaluates the full method only (and the baseline, always): the promotion reads its row.
TOY = (
    "synthetic.size=toy",
    "coordinating.threshold=0.3",
    "training.min_positives=3",
    "promotion.tolerance=0.2",
    "evaluation.main_methods=[multi-task]",
    *SMALL_MODELS,
)
PROBES = ("v000001", "v000002", "v000003", "v000010", "v000100")


@dataclass(frozen=True)
class State:
    champion: str | None
    live: str | None
    served: tuple[str | None, ...]  # the version of each probe's served list (None: no list)

    def problems(self, settled: bool) -> list[str]:
        """What disagrees. Served lists must always be the live.json version's (a reader never
        sees a mix). `settled` (after a completed run): the champion is the live version too; a
        kill between going live and moving the alias may leave them apart until the next run."""
        found = [
            f"a served list is version {version}, live.json says {self.live}"
            for version in self.served
            if version is not None and version != self.live
        ]
        if settled and self.champion != self.live:
            found.append(f"champion {self.champion} but live.json {self.live}")
        return found


@dataclass(frozen=True)
class Round:
    number: int
    change: str
    delay_s: float
    killed: bool
    during: str  # the last step the killed run logged
    after_kill: tuple[str, ...]
    rerun_code: int
    after_rerun: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.after_kill and self.rerun_code == 0 and not self.after_rerun


class Chaos:
    def __init__(self, root: Path, base: tuple[str, ...] = TOY) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.base = [*base, f"paths.workspace={root}", f"mlflow.tracking_uri={self.uri}"]
        self.repo = feature_repo_dir(load_config(overrides=self.base))

    def start(self, change: list[str], log: Path) -> subprocess.Popen:
        sets = [item for o in [*self.base, *change] for item in ("--set", o)]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        with log.open("w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", *sets, "main"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def run(self, change: list[str], log: Path, timeout: float = 900) -> int:
        return self.start(change, log).wait(timeout=timeout)

    def state(self) -> State:
        try:
            version = mlflow.MlflowClient(self.uri).get_model_version_by_alias(MODEL_NAME, CHAMPION)
            champion = str(version.version)
        except mlflow.exceptions.MlflowException:
            champion = None
        live = online.read_live(self.repo)
        served = online.read_related(self.repo, list(PROBES)) if live else {}
        return State(
            champion,
            live.version if live else None,
            tuple(served[p].version if served.get(p) else None for p in PROBES),
        )


def change_of(number: int, deep_every: int, attempt: int = 0) -> list[str]:
    """Round `number`'s setting (each attempt its own, or a redrawn round would find its run's
    outputs already there): every `deep_every`-th round the candidate cap, else the share
    weight."""
    if deep_every and number % deep_every == 0:
        return [f"candidates.max_per_source={100 - 3 * number - attempt}"]
    return [f"merge.manual_weights.share={0.5 + 0.01 * number + 0.002 * attempt:.3f}"]


def last_step(log: Path) -> str:
    """The module of the last `pipelines.*` line a run logged (where it was when killed)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if " pipelines." in line]
    return lines[-1].split(" pipelines.")[1].split(":")[0] if lines else "start-up"


def run_chaos(
    root: Path,
    kills: int,
    seed: int,
    deep_every: int = 3,
    report=print,
    length: float | None = None,
) -> list[Round]:
    """`kills` rounds on the workspace `root` (made on first use). A first complete run gives a
    champion (unless there is one); a second, with round 1's change, the length L of a round's
    run (unless the caller measured it: `length`, the seconds of a run of the same kind on this
    workspace, e.g. one that reran the merge onwards, with a champion there and settled). Each
    round then starts `main` with its change and kills it after a uniform random share of L (a
    run that ends first is not a kill: the round draws again, at most 3 times), checks, reruns
    and checks again."""
    chaos = Chaos(root)
    rng = np.random.default_rng(seed)
    logs = root / "chaos-logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs = [("first", ["merge.manual_weights.share=0.49"]), ("measure", None)]
    if length is not None:
        runs = []  # measured by the caller, on a workspace with a champion
        if chaos.state().champion is None:
            raise ValueError("run_chaos(length=...) needs a workspace with a champion")
    elif chaos.state().champion is not None:
        runs = runs[1:]  # a workspace with a champion already: no first run needed
    for name, change in runs:
        begun = time.monotonic()
        code = chaos.run(change or change_of(1, deep_every), logs / f"{name}.log")
        length = time.monotonic() - begun
        if code != 0:
            raise RuntimeError(f"the {name} run failed (exit {code}): see {logs / name}.log")
    report(f"a round's run: {length:.0f} s; state {chaos.state()}")
    rounds = []
    for number in range(2, kills + 2):
        killed, delay, during = False, 0.0, ""
        for attempt in range(3):
            change = change_of(number, deep_every, attempt)
            delay = float(rng.uniform(0.02, 1.0)) * length
            log = logs / f"round-{number:02d}-{attempt}.log"
            process = chaos.start(change, log)
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.kill()  # SIGKILL
                process.wait()
                killed, during = True, last_step(log)
                break
        after_kill = chaos.state().problems(settled=False)
        rerun = chaos.run(change, logs / f"round-{number:02d}-rerun.log")
        after_rerun = chaos.state().problems(settled=True)
        result = Round(
            number - 1,
            " ".join(change),
            delay,
            killed,
            during,
            tuple(after_kill),
            rerun,
            tuple(after_rerun),
        )
        rounds.append(result)
        report(
            f"kill {result.number:2d}: {result.change:40s} after {delay:5.1f} s "
            f"{'in ' + during if killed else '(run ended first)':28s} "
            f"rerun exit {rerun}; {'agree' if result.ok else '; '.join(after_kill + after_rerun)}"
        )
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--deep-every", type=int, default=3, help="every Nth round reruns from the candidates"
    )
    parser.add_argument("--workspace", help="default: a new temporary folder")
    args = parser.parse_args(argv)
    root = Path(args.workspace or tempfile.mkdtemp(prefix="related-videos-chaos-"))
    print(f"chaos: {args.kills} SIGKILLs of `main`, seed {args.seed}, workspace {root}")
    rounds = run_chaos(root, args.kills, args.seed, args.deep_every)
    killed = sum(r.killed for r in rounds)
    failed = [r.number for r in rounds if not r.ok]
    print(
        f"chaos: {killed} of {len(rounds)} rounds killed a run; "
        f"{len(rounds) - len(failed)} agreed after the kill and after the rerun"
        + (f"; FAILED rounds {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
