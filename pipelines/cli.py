"""The command line: `related-videos [--config F] [--set key=value ...] COMMAND`.

Commands are the steps (generate, ingest, validate, features, candidates, train, merge,
evaluate, experiment), the table's life (promote, publish, rollback, repair), serving (serve,
related), `main` (the chain; `--force STEP` reruns a step and those after it) and `demo` (the
chain on the embedded defaults, then where to look next). Known failures print a message, not a
trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence

from pipelines.broken import BrokenState, explain
from pipelines.config import Config, ConfigError, load_config
from pipelines.data.io import DataFileError
from pipelines.feature_store import FeatureStoreError
from pipelines.gate_report import FirstTableRefused, GateFailed
from pipelines.lock import WorkspaceBusy, workspace_lock
from pipelines.remembered import load_remembered, remember

EXIT_DATA, EXIT_CONFIG, EXIT_GATE = 1, 2, 3
EXIT_BIND = 4  # `serve` cannot listen on serving.host:serving.port
EXIT_LOCKED = 5  # another run holds the workspace (pipelines/lock.py)
EXIT_BROKEN = 6  # a workspace file is damaged or cannot be written (pipelines/broken.py)
READ_ONLY = ("serve", "related")  # commands that never take the workspace's run lock
QUIET_LOGGERS = (
    "great_expectations",
    "mlflow",
    "alembic",
    "urllib3",
    "matplotlib",
    "feast",
    "implicit",
)


# Library warnings that say nothing to a user of this tool (Keras 3.15 under NumPy 2.4 when
# saving; MLflow's hints on how a model could be logged).
KNOWN_NOISE = (
    (DeprecationWarning, ".*__array__ implementation doesn't accept a copy keyword"),
    (UserWarning, ".*An input example was not provided"),
    (UserWarning, ".*Inferred schema contains integer column"),
    (UserWarning, ".*Add type hints to the `predict` method"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="related-videos", description=__doc__)
    parser.add_argument("-c", "--config", help="a YAML file layered over pipelines/config.yaml")
    parser.add_argument(
        "-s",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one value, e.g. merge.top_n=30",
    )
    parser.add_argument("--dataset", help="shortcut for --set data.dataset=NAME")
    parser.add_argument("--workspace", help="shortcut for --set paths.workspace=DIR")
    parser.add_argument(
        "--size",
        help="shortcut for --set synthetic.size=PRESET (toy, small, default, large, xlarge)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("generate", help="make the synthetic data set")
    commands.add_parser("ingest", help="bring KuaiRand-Pure to the contract (--dataset kuairand)")
    commands.add_parser("validate", help="run the input gate; write the validated tables")
    commands.add_parser("features", help="publish video profiles and user features to Feast")
    commands.add_parser("candidates", help="stage 1: content-gated candidate pairs")
    commands.add_parser("train", help="stage 2: coordinating network, ALS and two-tower models")
    commands.add_parser("merge", help="stage 3: the related-video table, gated and registered")
    commands.add_parser(
        "evaluate", help="offline evaluation: every method on the training days, a report"
    )
    commands.add_parser(
        "experiment", help="simulated A/B test of the evaluated methods (synthetic data only)"
    )
    promote = commands.add_parser(
        "promote", help="compare the challenger with the champion; approve or reject it"
    )
    churn_help = "approve a challenger even if its list churn is above promotion.max_churn"
    promote.add_argument("--accept-churn", action="store_true", help=churn_help)
    publish = commands.add_parser(
        "publish", help="make the approved challenger (or the champion) live"
    )
    publish.add_argument(
        "--version", help="publish this registered version instead (it becomes the champion)"
    )
    commands.add_parser("rollback", help="move the champion back to the previous one, live")
    commands.add_parser(
        "repair",
        help="rebuild the live pointer (and a damaged Feast registry) from the champion",
    )
    commands.add_parser(
        "serve", help="the HTTP service: GET /related/{video_id}?n=, /health; pages at /"
    )
    related = commands.add_parser("related", help="print a video's live related list")
    related.add_argument("video_id")
    related.add_argument("-n", type=int, default=None, help="how many (default: merge.top_n)")
    for name, text in (
        ("main", "the whole chain as one MLflow parent run"),
        ("demo", "the whole chain on the embedded defaults"),
    ):
        chain = commands.add_parser(name, help=text)
        chain.add_argument(
            "--force",
            action="append",
            default=[],
            metavar="STEP",
            help="rerun STEP and the steps after it even if reusable (repeatable)",
        )
        chain.add_argument("--accept-churn", action="store_true", help=churn_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_libraries)
    for category, message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    overrides = list(args.overrides)
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    if args.workspace:
        overrides.append(f"paths.workspace={args.workspace}")
    if args.size:
        overrides.append(f"synthetic.size={args.size}")
    if getattr(args, "accept_churn", False):  # promote, main, demo
        overrides.append("promotion.accept_churn=true")
    config = None
    try:
        config = load_config(args.config, overrides)
        if args.config is None and args.command != "demo":  # demo: the embedded defaults
            config = load_remembered(config.workspace, overrides) or config
        if args.command in READ_ONLY:
            return _run(args, config)
        with workspace_lock(config.workspace, f"related-videos {args.command}"):
            return _run(args, config)
    except BrokenState as error:
        return _broken(error)
    except WorkspaceBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except GateFailed as failure:
        print(failure.report.summary(), file=sys.stderr)
        print("Nothing was written downstream.", file=sys.stderr)
        return EXIT_GATE
    except FirstTableRefused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return EXIT_GATE
    except (DataFileError, FeatureStoreError, ValueError) as error:
        broken = _recognised(error, config)
        if broken is not None:
            return _broken(broken)
        logging.getLogger(__name__).debug("the error in full", exc_info=True)  # with --verbose
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DATA
    except Exception as error:
        broken = _recognised(error, config)
        if broken is None:
            raise
        return _broken(broken)


def _recognised(error: Exception, config: Config | None) -> BrokenState | None:
    """The broken workspace file behind `error` (pipelines/broken.py), if it is a known one."""
    if config is None:
        return None
    from pipelines.workspace import feature_repo_dir

    uri = sys.modules["mlflow"].get_tracking_uri() if "mlflow" in sys.modules else ""
    return explain(error, config.workspace, feature_repo_dir(config), uri)


def _broken(error: BrokenState) -> int:
    """The message alone; the trace of what raised it with --verbose."""
    logging.getLogger(__name__).debug("the error in full", exc_info=True)
    print(f"error: {error}", file=sys.stderr)
    return EXIT_BROKEN


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Libraries' chatter below WARNING stays out of the log (they reset their own levels), and
    so do the known warnings: Feast, imported late, puts its own warning filters first."""
    if record.name == "py.warnings":
        text = record.getMessage()
        return not any(re.search(pattern, text) for _, pattern in KNOWN_NOISE)
    return record.levelno >= logging.WARNING or not record.name.startswith(QUIET_LOGGERS)


def _run(args: argparse.Namespace, config: Config) -> int:
    command = args.command
    if command in READ_ONLY:  # the online store only: no TensorFlow, no MLflow
        from pipelines.serve import CannotListen, related_lines, run_server

        if command == "serve":
            try:
                run_server(config)
            except CannotListen as error:
                print(f"error: {error}", file=sys.stderr)
                return EXIT_BIND
        else:
            print(related_lines(config, args.video_id, args.n))
        return 0
    # Imported here so that `--help` and configuration errors answer without loading MLflow,
    # Great Expectations and TensorFlow.
    from pipelines import tracking
    from pipelines.candidates import run_candidates
    from pipelines.evaluate import run_evaluate
    from pipelines.experiment import run_experiment
    from pipelines.features import run_features
    from pipelines.generate import run_generate
    from pipelines.ingest import run_ingest
    from pipelines.main import run_main, run_steps, steps_until
    from pipelines.merge import run_merge
    from pipelines.promote import run_promote
    from pipelines.publish import run_publish, run_repair, run_rollback
    from pipelines.train import run_train
    from pipelines.validate import run_validate

    for name in QUIET_LOGGERS:  # the libraries set their own levels when imported
        logging.getLogger(name).setLevel(logging.WARNING)
    if command in ("main", "demo"):
        if command == "main" and args.config is not None:
            remember(config)  # later commands on this workspace need no --config
        result = run_main(config, force=args.force)
        print(_chain_lines(result))
        if command == "demo":
            _print_next_steps(config, result)
        return 0
    tracking.configure_for(config)
    if command == "generate":
        for name, path in run_generate(config).items():
            print(f"{name}: {path}")
    elif command == "ingest":
        for name, path in run_ingest(config).items():
            print(f"{name}: {path}")
    elif command == "validate":
        validated = run_validate(config)
        print(validated.report.summary())
        print(f"validated tables: {validated.folder}")
    elif command == "features":
        features = run_features(config)
        print(f"feature repo: {features.repo} (cd there and run `feast ui`)")
    elif command == "candidates":
        candidates = run_candidates(config)
        print(f"candidate pairs: {_candidates_line(candidates)}")
    elif command == "train":
        print(_trained_lines(run_train(config)))
    elif command == "merge":
        merged = run_merge(config)
        print(merged.report.summary())
        print(_merged_lines(merged))
    elif command == "evaluate":
        # The data, features and candidates it needs, reused where they are up to date.
        run_steps(config, steps_until(config, "candidates"))
        print(_evaluation_lines(run_evaluate(config)))
    elif command == "experiment":
        experiment = run_experiment(config)
        print(experiment.table.to_string())
        print(f"report: {experiment.folder}")
    elif command == "promote":
        print(_decision_lines(run_promote(config)))
    elif command == "repair":
        print(f"repaired: {_published_line(run_repair(config))}")
    elif command in ("publish", "rollback"):
        print(
            _published_line(
                run_publish(config, args.version) if command == "publish" else run_rollback(config)
            )
        )
    return 0


def _chain_lines(result) -> str:
    reused = ", ".join(result.reused) or "none"
    lines = [f"steps run: {', '.join(result.ran) or 'none'}; reused (unchanged): {reused}"]
    if "train" in result.results:
        lines.append(_trained_lines(result.results["train"]))
    if "merge" in result.results:
        lines.append(result.results["merge"].report.summary())
    if "evaluate" in result.results:
        lines.append(_evaluation_lines(result.results["evaluate"]))
    lines += [_decision_lines(result.decision), _published_line(result.published)]
    return "\n".join(lines)


def _decision_lines(decision) -> str:
    verdict = "approved" if decision.promote else "REJECTED"
    lines = [
        f"promotion: related-videos v{decision.challenger} {verdict}: {'; '.join(decision.reasons)}"
    ]
    if decision.champion and decision.champion != decision.challenger:
        compared = decision.comparison.dropna(subset=["champion"])
        for row in compared.itertuples():
            mark = "  worse" if row.worse else ""
            lines.append(
                f"  {row.metric:<18} v{decision.challenger} {row.challenger:.4f}  "
                f"champion v{decision.champion} {row.champion:.4f}  {row.change:+.1%}{mark}"
            )
    return "\n".join(lines)


def _published_line(published) -> str:
    live = published.live
    state = "published" if published.changed else "already live"
    return (
        f"online: related-videos v{published.version} {state} ({live.videos:,} videos, "
        f"{live.color} copy since {live.published_at}); champion v{published.version}"
    )


def _trained_lines(trained) -> str:
    """One line per model group: seconds, share of positives routed, registered versions."""
    routing, versions = trained.routing, trained.versions
    lines = [f"stage 2 ({trained.folder}), registered in the MLflow model registry:"]
    for name, seconds in trained.seconds.items():
        registered = [f"{model} v{v}" for model, v in versions.items() if _belongs(model, name)]
        routed = ""
        if name in routing.index:
            routed = f"{routing.loc[name, 'routed_share']:4.0%} of positives routed  "
        lines.append(f"  {name:<21}{seconds:6.1f} s  {routed}{', '.join(registered)}")
    return "\n".join(lines)


def _merged_lines(merged, examples: int = 3, shown: int = 5) -> str:
    table = merged.table
    weights = ", ".join(f"{name} {weight:.2f}" for name, weight in merged.weights.items())
    lines = [
        f"related table: {merged.path} ({len(table):,} rows, "
        f"{table['video_id'].nunique():,} videos), registered as related-videos v{merged.version}",
        f"learned objective weights: {weights}",
    ]
    for video_id in table["video_id"].drop_duplicates().head(examples):
        lines.append(f"  under {video_id}:")
        for row in table[table["video_id"] == video_id].head(shown).itertuples():
            score = f"{row.score:.3f}"
            lines.append(f"    {row.rank:>2}. {row.related_video_id}  {score}  {row.reason}")
    return "\n".join(lines)


def _evaluation_lines(evaluation) -> str:
    """The headline columns of the evaluation table, and where the report is."""
    from pipelines.evaluation_report import HEADLINE

    keys = [key for key, _ in HEADLINE[:7] if key in evaluation.table]
    lines = [
        f"offline evaluation (test from {evaluation.split}), change against the baseline:",
        f"  {'method':<20}" + "".join(f"{key.replace('_play_time', '_play'):>14}" for key in keys),
    ]
    for method in evaluation.table.index:
        if method == evaluation.baseline:
            cells = [f"{evaluation.table.loc[method, key]:14.4f}" for key in keys]
        else:
            cells = [_percent(evaluation.change.loc[method, key]) for key in keys]
        lines.append(f"  {method:<20}" + "".join(cells))
    lines.append(f"report: {evaluation.report}")
    return "\n".join(lines)


def _percent(value: float) -> str:
    """A change in percent, 14 wide; n/a where the baseline's value is 0."""
    return f"{value:+13.1f}%" if value == value else f"{'n/a':>14}"


def _belongs(model: str, name: str) -> bool:
    return model == name or model in (f"als-{name}", f"two-tower-{name}")


def _candidates_line(candidates) -> str:
    summary = candidates.summary
    return (
        f"{candidates.path} ({int(summary['pairs']):,} pairs, "
        f"{summary['coverage']:.1%} of videos have at least one)"
    )


def _print_next_steps(config, result) -> None:
    from pipelines import online, workspace
    from pipelines.redaction import redact
    from pipelines.serve import related_lines

    manifest = json.loads(workspace.validated_manifest(config).read_text())
    rows = ", ".join(f"{count:,} {name}" for name, count in manifest["rows"].items())
    repo = workspace.feature_repo_dir(config)
    live = online.read_live(repo)
    examples = []
    if live is not None:
        table = online.read_related(repo, _some_sources(config, 3), live)
        examples = [
            related_lines(config, video_id, 5) for video_id, found in table.items() if found
        ]
    print(f"""
Demo finished: {rows} passed the input gate.
{chr(10).join(examples)}

Where to look next:
  MLflow UI        : .venv/bin/mlflow ui --backend-store-uri {redact(result.tracking_uri)}
                     (parent run {result.run_id}; registered models under "Models":
                     related-videos has the aliases champion and challenger)
  evaluation       : {workspace.evaluation_report_dir(config) / "report.html"}
  input gate docs  : {workspace.reports_dir(config) / "input_gate" / "index.html"}
  feature repo     : {repo}  (cd there: feast ui, or feast serve)
  serve the table  : .venv/bin/related-videos serve, then
                     curl 'http://{config.serving.host}:{config.serving.port}/related/<video_id>?n=5'
                     (pages: http://{config.serving.host}:{config.serving.port}/)
  one list         : .venv/bin/related-videos related <video_id>
  workspace        : {config.workspace.resolve()}""")


def _some_sources(config, count: int) -> list[str]:
    from pipelines.workspace import read_related_table

    table = read_related_table(config)
    return list(table["video_id"].drop_duplicates().head(count))


if __name__ == "__main__":
    sys.exit(main())
