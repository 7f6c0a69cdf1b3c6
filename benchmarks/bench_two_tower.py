"""Benchmark of a two-tower epoch: our `fit_two_tower` (pairs drawn each epoch, gathered and
prefetched in tf.data, validation each epoch) against a bare Keras fit of the same architecture
(`build_towers`, the same spec, batch size and validation pairs) on pairs drawn once into
in-memory arrays. One process per method.

The data: one objective's positives (all of them, without routing) from the synthetic world at a
preset, with the users' current features (the train step reads them from Feast), and the
catalog's encoded profiles.

Run: `make bench-two-tower`, or `python -m benchmarks.bench_two_tower --size default`.
Prints figures and a Markdown table; asserts no timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ("ours", "keras")
LABELS = {
    "ours": "ours: models.two_tower.fit_two_tower (tf.data, fresh negatives each epoch)",
    "keras": "bare Keras fit, same towers, in-memory arrays",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", help="synthetic preset (default)")
    parser.add_argument("--objective", default="click", help="objective name (click)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per method (3)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds over the methods, interleaved (2)"
    )
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=V")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _work(args.worker, Path(args.folder), args)
        return
    _compare(args)


def _config(args: argparse.Namespace):
    from pipelines.config import load_config

    return load_config(overrides=[*args.overrides, f"synthetic.size={args.size}"])


def _params(config, epochs: int):
    # The configuration's own TwoTowerParams (seeded); every epoch runs.
    return dataclasses.replace(config.two_tower, max_epochs=epochs, early_stopping_patience=epochs)


def _compare(args: argparse.Namespace) -> None:
    from models.profile import encode_profiles, fit_vocabulary
    from simulator.synthetic import generate

    config = _config(args)
    objective = next(o for o in config.objectives if o.name == args.objective)
    started = time.perf_counter()
    world = generate(config.synthetic, config.seed)
    attributes = config.dataset.video_attributes
    vocabulary = fit_vocabulary(world.videos, attributes, config.candidates.top_k_values)
    matrix = encode_profiles(world.videos, vocabulary)
    items = pd.DataFrame(
        {
            "video_id": world.videos["video_id"].astype(str).to_numpy(),
            "profile_indices": [list(row.indices) for row in matrix],
        }
    )
    users = world.users[["user_id", *config.dataset.user_categorical, *config.dataset.user_numeric]]
    events = world.events
    positives = events[events[objective.label].astype(bool)][["user_id", "video_id"]]
    positives = positives.merge(users, on="user_id", how="left").reset_index(drop=True)
    holdout = np.random.default_rng(config.seed).random(len(positives))
    train = positives[holdout >= config.training.holdout_share].reset_index(drop=True)
    params = _params(config, args.epochs)
    pairs = len(train) * (1 + params.negatives_per_positive)
    print(
        f"# Two-tower epoch, objective {objective.name}, synthetic {args.size}\n\n"
        f"{len(events):,} events, {len(train):,} training positives "
        f"({params.validation_share:.0%} of them for validation), {len(items):,} videos; "
        f"{pairs:,} pairs an epoch (1 + {params.negatives_per_positive} negatives), batch "
        f"{params.batch_size}, towers {params.tower_units}, embedding {params.embedding_dim}; "
        f"data {time.perf_counter() - started:.1f} s\n"
        f"one process per method and round, {args.rounds} rounds interleaved, {args.epochs} epochs "
        "each; 'steady epoch' is the median of epochs 2 on of every round (the first also traces "
        "the graph)\n",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-two-tower-") as tmp:
        folder = Path(tmp)
        with open(folder / "inputs.pkl", "wb") as out:
            pickle.dump(
                {
                    "train": train,
                    "items": items,
                    "attribute_of_column": np.asarray(vocabulary.attribute_of_column),
                    "n_columns": vocabulary.n_columns,
                },
                out,
            )
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        for round_number, method in ((r, m) for r in range(args.rounds) for m in METHODS):
            print(f"round {round_number + 1}: running {method} ...", file=sys.stderr, flush=True)
            completed = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_two_tower", "--worker", method,
                 "--folder", str(folder), "--size", args.size, "--objective", args.objective,
                 "--epochs", str(args.epochs), *[f"--set={item}" for item in args.overrides]],
                check=False, env=environment,
            )  # fmt: skip
            report = folder / f"{method}.json"
            if completed.returncode or not report.exists():
                results[method] = {"error": f"exit code {completed.returncode}"}
                continue
            found = json.loads(report.read_text())
            report.unlink()
            if "error" in results.get(method, {}):
                continue
            results.setdefault(method, []).append(found)
    results = {m: _pooled(r) if isinstance(r, list) else r for m, r in results.items()}
    _report(results)


def _pooled(rounds: list[dict]) -> dict:
    """One method's rounds as one result: the first epoch of the first round, the later epochs
    of every round (steady), the least total and gather time."""
    pooled = {**rounds[0], "steady": [e for r in rounds for e in r["epochs"][1:]]}
    for key in ("total_seconds", "gather_seconds", "arrays_seconds"):
        if key in rounds[0]:
            pooled[key] = min(r[key] for r in rounds)
    return pooled


class EpochClock:
    """Wall time of each epoch, from the callback hooks."""

    def __init__(self) -> None:
        import keras

        self.seconds: list[float] = []
        clock = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock._began = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                clock.seconds.append(time.perf_counter() - clock._began)

        self.callback = Callback()


def _work(method: str, folder: Path, args: argparse.Namespace) -> None:
    import keras

    from models import two_tower

    config = _config(args)
    with open(folder / "inputs.pkl", "rb") as stream:
        inputs = pickle.load(stream)
    train, items = inputs["train"], inputs["items"]
    categorical, numeric = list(config.dataset.user_categorical), list(config.dataset.user_numeric)
    params = _params(config, args.epochs)
    clock = EpochClock()
    report: dict = {}
    started = time.perf_counter()
    if method == "ours":
        # fit_two_tower takes no callbacks; time its epochs by wrapping Model.fit's callbacks.
        original = keras.Model.fit

        def fit(self, *positional, callbacks=None, **named):
            return original(self, *positional, callbacks=[*(callbacks or []), clock.callback],
                            **named)  # fmt: skip

        keras.Model.fit = fit
        model = two_tower.fit_two_tower(
            train, items, categorical, numeric, inputs["attribute_of_column"],
            inputs["n_columns"], params,
        )  # fmt: skip
        keras.Model.fit = original
        report["total_seconds"] = time.perf_counter() - started
        report["gather_seconds"] = _gather_seconds(two_tower, model, train, items, params)
    else:
        keras.utils.set_random_seed(params.seed)
        rng = np.random.default_rng(params.seed)
        order = rng.permutation(len(train))
        n_validation = min(round(params.validation_share * len(train)), len(train) - 1)
        validation_rows, train_rows = order[:n_validation], order[n_validation:]
        spec = two_tower.make_spec(
            train.iloc[train_rows], items, categorical, numeric, inputs["attribute_of_column"]
        )
        catalog = two_tower.encode_items(items, spec)
        users = two_tower.encode_users(train, spec)
        row = pd.Index(items["video_id"]).get_indexer(train["video_id"].astype(str))
        pool = np.flatnonzero(catalog["video_index"] > 0)

        def arrays(rows, dropout):
            subset = {k: v[rows] for k, v in users.items()}
            pairs = two_tower.sample_pairs(
                row[rows], pool, params.negatives_per_positive, rng, dropout
            )
            return two_tower.training_arrays(subset, catalog, pairs)

        x, y = arrays(train_rows, params.id_dropout)
        validation = arrays(validation_rows, 0.0)
        report["arrays_seconds"] = time.perf_counter() - started
        _, _, train_model = two_tower.build_towers(spec, params)
        train_model.fit(
            x, y, batch_size=params.batch_size, epochs=params.max_epochs,
            validation_data=validation, shuffle=False, verbose=0, callbacks=[clock.callback],
        )  # fmt: skip
        report["total_seconds"] = time.perf_counter() - started
    report["epochs"] = clock.seconds
    (folder / f"{method}.json").write_text(json.dumps(report))


def _gather_seconds(two_tower, model, train, items, params) -> float:
    """What one epoch's batches cost to draw and gather through tf.data alone (no training)."""
    users = two_tower.encode_users(train, model.spec)
    row = pd.Index(items["video_id"]).get_indexer(train["video_id"].astype(str))
    started = time.perf_counter()
    dataset, steps = two_tower.pair_batches(
        users, model.catalog, row, params, np.random.default_rng(0), train=True
    )
    for _ in dataset.take(steps):
        pass
    return time.perf_counter() - started


def _report(results: dict) -> None:
    bare = results.get("keras", {})
    reference = statistics.median(bare["steady"] or bare["epochs"]) if "epochs" in bare else 0
    print("| method | first epoch s | steady epoch s | x bare Keras (steady) | total s |")
    print("| --- | --- | --- | --- | --- |")
    for method in METHODS:
        result = results[method]
        if "error" in result:
            print(f"| {LABELS[method]} | - | - | - | {result['error']} |")
            continue
        epochs = result["epochs"]
        steady = statistics.median(result["steady"] or epochs)
        ratio = f"{steady / reference:.2f}" if reference else "-"
        print(
            f"| {LABELS[method]} | {epochs[0]:.1f} | {steady:.1f} | {ratio} | "
            f"{result['total_seconds']:.1f} |"
        )
    ours = results.get("ours", {})
    if "gather_seconds" in ours:
        print(
            f"\nours: drawing and gathering one epoch's batches through tf.data alone (no "
            f"training): {ours['gather_seconds']:.1f} s"
        )
    if "arrays_seconds" in bare:
        print(f"bare Keras: drawing the pairs into arrays once: {bare['arrays_seconds']:.1f} s")
    print(
        "both epochs include the validation pass; ours draws fresh negatives each epoch, bare "
        "Keras reuses the pairs drawn once"
    )


if __name__ == "__main__":
    main()
