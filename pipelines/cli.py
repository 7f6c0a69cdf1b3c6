"""The command line: `related-videos [--config F] [--set key=value ...] COMMAND`.

Commands are the steps (generate, ingest, validate, features, candidates, train, merge), `main`
(the chain) and `demo` (the chain on the embedded defaults, then where to look next). Known
failures print a message, not a trace.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from pipelines.config import Config, ConfigError, load_config
from pipelines.data.io import DataFileError
from pipelines.feature_store import FeatureStoreError
from pipelines.gate_report import GateFailed

EXIT_DATA, EXIT_CONFIG, EXIT_GATE = 1, 2, 3
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
    commands.add_parser("main", help="the whole chain as one MLflow parent run")
    commands.add_parser("demo", help="the whole chain on the embedded defaults")
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
    overrides = list(args.overrides)
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    if args.workspace:
        overrides.append(f"paths.workspace={args.workspace}")
    if args.size:
        overrides.append(f"synthetic.size={args.size}")
    try:
        config = load_config(args.config, overrides)
        return _run(args.command, config)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except GateFailed as failure:
        print(failure.report.summary(), file=sys.stderr)
        print("Nothing was written downstream.", file=sys.stderr)
        return EXIT_GATE
    except (DataFileError, FeatureStoreError, ValueError) as error:
        logging.getLogger(__name__).debug("the error in full", exc_info=True)  # with --verbose
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DATA


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Libraries' chatter below WARNING stays out of the log (they reset their own levels)."""
    return record.levelno >= logging.WARNING or not record.name.startswith(QUIET_LOGGERS)


def _run(command: str, config: Config) -> int:
    # Imported here so that `--help` and configuration errors answer without loading MLflow,
    # Great Expectations and TensorFlow.
    from pipelines import tracking
    from pipelines.candidates import run_candidates
    from pipelines.features import run_features
    from pipelines.generate import run_generate
    from pipelines.ingest import run_ingest
    from pipelines.main import run_main
    from pipelines.merge import run_merge
    from pipelines.train import run_train
    from pipelines.validate import run_validate

    for name in QUIET_LOGGERS:  # the libraries set their own levels when imported
        logging.getLogger(name).setLevel(logging.WARNING)
    if command in ("main", "demo"):
        result = run_main(config)
        print(result.validated.report.summary())
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
    return 0


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


def _belongs(model: str, name: str) -> bool:
    return model == name or model in (f"als-{name}", f"two-tower-{name}")


def _candidates_line(candidates) -> str:
    summary = candidates.summary
    return (
        f"{candidates.path} ({int(summary['pairs']):,} pairs, "
        f"{summary['coverage']:.1%} of videos have at least one)"
    )


def _print_next_steps(config, result) -> None:
    workspace = config.workspace.resolve()
    rows = ", ".join(f"{count:,} {name}" for name, count in result.validated.rows.items())
    print(f"""
Demo finished: {rows} passed the input gate.
  validated tables : {result.validated.folder}
  gate data docs   : {result.validated.report.docs_index}
  feature repo     : {result.features.repo}  (cd there: feast ui)
  candidate pairs  : {_candidates_line(result.candidates)}
{_trained_lines(result.trained)}
{_merged_lines(result.merged)}
  output gate docs : {result.merged.report.docs_index}
  MLflow runs      : .venv/bin/mlflow ui --backend-store-uri {result.tracking_uri}
                     (parent run {result.run_id}; models under "Models")
  workspace        : {workspace}""")


if __name__ == "__main__":
    sys.exit(main())
