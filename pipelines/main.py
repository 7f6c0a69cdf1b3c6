"""The whole chain as one parent MLflow run: bring the data (generate or ingest), gate it, publish
the features, find the candidates, train, merge, evaluate, promote the new table if it is not
worse than the champion, and publish the champion to the online store.

A step whose inputs, configuration and code are those of its last finished run is reused, not
run again: each step leaves a fingerprint in the folder it publishes (see `Step`). The code part
is the project's version and a digest of the source of every project module the step runs
(`code_digest`), so an upgrade or a fix reruns what it touches; `main --force STEP` reruns a step
and the steps after it on demand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import yaml

from pipelines import faults, redaction, registry, tracking, workspace
from pipelines.candidates import run_candidates
from pipelines.config import Config, ConfigError
from pipelines.evaluate import run_evaluate
from pipelines.features import run_features
from pipelines.fingerprint import TRAINING_KEYS, code_digest, lookup
from pipelines.gate_report import FirstTableRefused
from pipelines.generate import run_generate
from pipelines.ingest import run_ingest
from pipelines.merge import run_merge
from pipelines.promote import Decision, run_promote
from pipelines.publish import Published, run_publish
from pipelines.registry import MODEL_NAME
from pipelines.train import evaluated_routing, evaluated_two_tower_drops, run_train
from pipelines.validate import run_validate

log = logging.getLogger(__name__)
MARKER = ".step.json"


@dataclass(frozen=True)
class Step:
    """A step of the chain: what it runs, the folder it publishes (where its fingerprint goes),
    and the configuration keys (dotted paths into the YAML) its output depends on."""

    name: str
    run: Callable[[Config], Any]
    folder: Callable[[Config], Path]
    keys: tuple[str, ...]
    inputs: Callable[[Config], dict[str, str]] = field(default=lambda config: {})
    module: str = ""  # the step's module (its code digest follows its imports); default by name
    # The earlier step whose output this one builds on (its fingerprint is part of this one's);
    # default the step just before. Skipping over a step means depending only on what `inputs`
    # takes from it.
    after: str = ""

    @property
    def code(self) -> str:
        return code_digest(self.module or f"pipelines.{self.name}")


@dataclass
class PipelineResult:
    run_id: str
    tracking_uri: str
    reused: list[str]
    results: dict[str, Any]  # what each step that ran returned, in order
    decision: Decision
    published: Published

    @property
    def ran(self) -> list[str]:
        return list(self.results)


def steps(config: Config) -> list[Step]:
    """The chain for the configured data set: generate (synthetic) or ingest (kuairand) first;
    a data set of your own files starts at validate."""
    dataset = f"datasets.{config.data.dataset}"
    first = []
    if config.data.dataset == "synthetic":
        first = [Step("generate", run_generate, workspace.raw_dir, ("seed", "synthetic"))]
    elif config.data.dataset == "kuairand":
        first = [Step("ingest", run_ingest, workspace.raw_dir, (dataset,), _kuairand_files)]
    return [
        *first,
        Step(
            "validate",
            run_validate,
            workspace.validated_dir,
            ("data", dataset, "gate"),
            _input_digests,
        ),
        Step(
            "features",
            run_features,
            lambda c: workspace.feature_repo_dir(c) / "data" / "sources",
            ("candidates.top_k_values", "serving.online_store", "serving.redis"),
        ),
        Step("candidates", lambda c: run_candidates(c), workspace.candidates_dir, ("candidates",)),
        # The evaluation fits the method on the days before its split, before the production
        # fit on every day: the production fit then trains no two-tower model the evaluation
        # found adding nothing (stage 2 is trained once per need, and no test day is seen by
        # anything the evaluation scores).
        Step(
            "evaluate",
            lambda c: run_evaluate(c, c.evaluation.main_methods),
            workspace.evaluation_dir,
            (*TRAINING_KEYS, "merge", "weights", "evaluation"),
        ),
        # Train takes from the evaluation only which two-tower models to skip and whether to
        # route by the coordinating network: a change of the merge or evaluation settings
        # reruns the evaluation, and training only when those decisions change.
        Step(
            "train",
            lambda c: run_train(
                c, skip_two_tower=evaluated_two_tower_drops(c), use_routing=evaluated_routing(c)
            ),
            workspace.models_dir,
            TRAINING_KEYS,
            lambda c: {
                "two_tower_skipped": ",".join(evaluated_two_tower_drops(c, say=False)),
                "routing": evaluated_routing(c, say=False),
            },
            after="candidates",
        ),
        Step("merge", lambda c: run_merge(c), workspace.related_dir, ("merge", "weights")),
    ]


def steps_until(config: Config, last: str) -> list[Step]:
    """The chain up to and including the step named `last`."""
    chain = steps(config)
    names = [step.name for step in chain]
    return chain[: names.index(last) + 1]


def run_main(config: Config, force: Iterable[str] = ()) -> PipelineResult:
    _check_forced(steps(config), force)
    uri = tracking.configure_for(config)
    dataset = config.data.dataset
    with mlflow.start_run(run_name="pipeline", tags={"dataset": dataset}) as parent:
        log_configuration(config)
        mlflow.log_params({"dataset": dataset, "seed": config.seed})
        results, reused = run_steps(config, steps(config), force)
        decision = run_promote(config)
        faults.checkpoint("after:promote")
        if not decision.promote and decision.champion is None:
            mlflow.set_tags({"ran": ",".join(results) or "none", "published": "none"})
            raise FirstTableRefused(MODEL_NAME, decision)
        published = run_publish(config)
        faults.checkpoint("after:publish")
        mlflow.set_tags({"ran": ",".join(results) or "none", "reused": ",".join(reused) or "none"})
        return PipelineResult(parent.info.run_id, uri, reused, results, decision, published)


def log_configuration(config: Config) -> None:
    """The run's configuration as the active run's artifact config.yaml, secrets redacted
    (passwords and tokens in the Redis connection string, the tracking URI, any URI)."""
    redacted = redaction.redact_config(config.raw)
    mlflow.log_text(yaml.safe_dump(redacted, sort_keys=False), "config.yaml")


def run_steps(
    config: Config, chain: Iterable[Step], force: Iterable[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    """Run each step unless its folder holds the fingerprint it would leave now; return what
    the steps that ran returned, by name, and the names of those reused. A step named in
    `force` runs, and so does every step after it."""
    chain = list(chain)
    forced = _check_forced(chain, force)
    ran: dict[str, Any] = {}
    reused: list[str] = []
    fingerprints: dict[str, str] = {}
    upstream = ""
    forcing = False
    for step in chain:
        if step.after:
            upstream = fingerprints[step.after]
        fingerprint = registry.digest(
            {
                "step": step.name,
                "config": {key: lookup(config.raw, key) for key in step.keys},
                "inputs": step.inputs(config),
                "code": step.code,
                "upstream": upstream,
            }
        )
        folder = step.folder(config)
        forcing = forcing or step.name in forced
        if forcing:
            log.info("%s: run on demand (--force)", step.name)
        if not forcing and _marker(folder) == fingerprint:
            log.info("%s: reused (inputs and configuration unchanged since %s)", step.name, folder)
            reused.append(step.name)
        else:
            ran[step.name] = step.run(config)
            _write_marker(folder, step.name, fingerprint)
        faults.checkpoint(f"after:{step.name}")
        fingerprints[step.name] = upstream = fingerprint
    return ran, reused


def _check_forced(chain: list[Step], force: Iterable[str]) -> set[str]:
    forced = set(force)
    names = [step.name for step in chain]
    unknown = sorted(forced - set(names))
    if unknown:
        raise ConfigError(f"--force: {unknown} are not steps of this chain {names}")
    return forced


def _kuairand_files(config: Config) -> dict[str, str]:
    """The shared KuaiRand files by name, size and time (too large to hash on every run)."""
    folder = Path(config.paths.kuairand)
    return {
        path.name: f"{path.stat().st_size}-{path.stat().st_mtime_ns}"
        for path in sorted(folder.glob("*"))
        if path.is_file()
    }


def _input_digests(config: Config) -> dict[str, str]:
    files = workspace.input_files(config)
    return {name: registry.file_digest(path) for name, path in files.items()}


def _marker(folder: Path) -> str | None:
    path = folder / MARKER
    try:
        return json.loads(path.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def _write_marker(folder: Path, step: str, fingerprint: str) -> None:
    """Inside the step's published folder: a rerun of the step swaps the folder, marker and all,
    so a marker never outlives the output it describes."""
    payload = {"step": step, "fingerprint": fingerprint, "at": datetime.now(UTC).isoformat()}
    scratch = folder / f"{MARKER}.tmp"
    scratch.write_text(json.dumps(payload) + "\n")
    scratch.replace(folder / MARKER)
