"""Stage 2's coordinating network (CN): a multi-label classifier of which objectives an event is a
positive of, its out-of-fold predictions, and the routing of positives with p_k > t to objective k.

Inputs are user features, the video's profile (a mean-pooled embedding bag over its active
profile columns) and numeric event context; never a label or the play time labels derive from.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import ops

from models.keras_parts import EmbeddingBag, UserFeatureEncoder, predict_in_chunks
from models.params import CoordinatingParams
from models.routing import (
    CoordinatingInputs,
    Objectives,
    combine_folds,
    fold_assignment,
    objective_labels,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureEncoder:
    """Vocabularies and standardization, fit on training rows only (see `fit_final`)."""

    spec: CoordinatingInputs
    vocabularies: dict[str, list[str]]
    means: dict[str, float]
    stds: dict[str, float]

    @classmethod
    def fit(cls, events: pd.DataFrame, spec: CoordinatingInputs) -> FeatureEncoder:
        users = UserFeatureEncoder.fit(
            events, spec.user_categorical, spec.numeric, missing_category=True
        )
        means = {column: mean for column, (mean, _) in users.scaling.items()}
        stds = {column: std for column, (_, std) in users.scaling.items()}
        return cls(spec, users.vocabularies, means, stds)

    @property
    def users(self) -> UserFeatureEncoder:
        """The shared encoder of the categorical and numeric features (a missing category is a
        category of its own)."""
        scaling = {c: (self.means[c], self.stds[c]) for c in self.spec.numeric}
        return UserFeatureEncoder(self.vocabularies, scaling, missing_category=True)

    @property
    def n_categorical_ids(self) -> int:
        # 0 is padding; each column has its own unknown id before its vocabulary.
        return 1 + sum(len(v) + 1 for v in self.vocabularies.values())

    def to_dict(self) -> dict:
        return {
            "spec": {k: getattr(self.spec, k) for k in CoordinatingInputs.__dataclass_fields__},
            "vocabularies": self.vocabularies,
            "means": self.means,
            "stds": self.stds,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureEncoder:
        return cls(
            CoordinatingInputs(**data["spec"]),
            *(data[k] for k in ("vocabularies", "means", "stds")),
        )


@dataclass(frozen=True)
class FeatureArrays:
    categorical: np.ndarray  # int32 (n, categorical columns): ids in one shared table
    numeric: np.ndarray  # float32 (n, 2 * numeric columns): standardized values, missing flags
    profile: np.ndarray  # int32 (n, longest profile): active profile column + 1, 0 pads
    encoder: FeatureEncoder

    def inputs(self) -> dict[str, np.ndarray]:
        named = {"numeric": self.numeric, "profile": self.profile}
        return {"categorical": self.categorical, **named} if self.categorical.shape[1] else named


def encode_features(
    events: pd.DataFrame, spec: CoordinatingInputs, encoder: FeatureEncoder | None = None
) -> FeatureArrays:
    """The network's inputs for `events`; fits a new encoder on `events` unless one is given."""
    encoder = encoder or FeatureEncoder.fit(events, spec)
    users = encoder.users
    n, codes, offset = len(events), [], 1
    for column_codes, vocabulary in zip(
        users.codes(events), users.vocabularies.values(), strict=True
    ):
        codes.append(offset + column_codes)  # unknown (0) lands on the column's unknown id
        offset += len(vocabulary) + 1
    categorical = np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int32)
    return FeatureArrays(
        categorical.astype(np.int32),
        users.numeric(events),
        _padded_profiles(events["profile_indices"], spec.n_columns),
        encoder,
    )


@keras.saving.register_keras_serializable(package="related_videos")
class BalancedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy over k sigmoid outputs, positives of output j weighted by
    `positive_weights[j]` (n_neg / n_pos): Keras' sample_weight cannot weight per output."""

    def __init__(self, positive_weights: Sequence[float], name: str = "balanced_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        weights = ops.convert_to_tensor(self.positive_weights, dtype=y_pred.dtype)
        terms = weights * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)
        return -ops.mean(terms, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "positive_weights": self.positive_weights}


def build_network(
    encoder: FeatureEncoder,
    n_objectives: int,
    hidden_units: Sequence[int],
    positive_weights: Sequence[float],
    learning_rate: float,
) -> keras.Model:
    """Hidden relu layers, then one Dense(k, sigmoid) head. The first hidden layer is a Dense on
    [one-hot user categories, numeric features, mean-pooled profile multi-hot], built as a sum
    of a Dense and two embedding bags of its width."""
    first, *rest = hidden_units
    numeric = keras.Input((2 * len(encoder.spec.numeric),), name="numeric")
    profile = keras.Input((None,), dtype="int32", name="profile")
    inputs = [numeric, profile]
    parts = [
        keras.layers.Dense(first, name="hidden_1_numeric")(numeric),
        EmbeddingBag(encoder.spec.n_columns + 1, first, name="hidden_1_profile")(profile),
    ]
    if encoder.vocabularies:
        categorical = keras.Input((len(encoder.vocabularies),), dtype="int32", name="categorical")
        inputs.append(categorical)
        bag = EmbeddingBag(encoder.n_categorical_ids, first, "sum", name="hidden_1_categorical")
        parts.append(bag(categorical))
    hidden = keras.layers.Activation("relu", name="hidden_1")(keras.layers.Add()(parts))
    for i, units in enumerate(rest, start=2):
        hidden = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(hidden)
    output = keras.layers.Dense(n_objectives, activation="sigmoid", name="objectives")(hidden)
    model = keras.Model(inputs, output, name="coordinating_network")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=BalancedBinaryCrossentropy(positive_weights),
        jit_compile=False,  # XLA compilation costs more than it saves on a network this small
    )
    return model


@dataclass
class CoordinatingNetwork:
    model: keras.Model
    encoder: FeatureEncoder
    objectives: list[tuple[str, str]]
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per epoch

    def predict(self, events: pd.DataFrame) -> pd.DataFrame:
        """p_<objective> per event, aligned with `events`' index."""
        features = encode_features(events, self.encoder.spec, self.encoder)
        p = predict_in_chunks(self.model, features.inputs())
        columns = [f"p_{name}" for name, _ in self.objectives]
        return pd.DataFrame(p.astype(np.float64), index=events.index, columns=columns)

    def save(self, folder: Path) -> None:
        """`model.keras` (Keras native) and `encoder.json` (vocabularies, means, objectives)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / "model.keras")
        state = {
            "encoder": self.encoder.to_dict(),
            "objectives": self.objectives,
            "history": self.history.to_dict(orient="list"),
        }
        (folder / "encoder.json").write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, folder: Path) -> CoordinatingNetwork:
        folder = Path(folder)
        state = json.loads((folder / "encoder.json").read_text())
        return cls(
            keras.saving.load_model(folder / "model.keras", compile=False),
            FeatureEncoder.from_dict(state["encoder"]),
            [(name, label) for name, label in state["objectives"]],
            pd.DataFrame(state["history"]),
        )


def fit_final(
    events: pd.DataFrame,
    objectives: Objectives,
    spec: CoordinatingInputs,
    params: CoordinatingParams,
) -> CoordinatingNetwork:
    """The CN fit on every row of `events` (encoders included), seeded by `params.seed`."""
    keras.utils.set_random_seed(params.seed)
    labels = objective_labels(events, objectives).to_numpy(np.float32)
    positives = labels.sum(axis=0)
    # A label with no positives (or no negatives) in these rows keeps weight 1.
    weights = np.where(positives > 0, (len(labels) - positives) / np.maximum(positives, 1), 1.0)
    features = encode_features(events, spec)
    model = build_network(
        features.encoder, len(objectives), params.hidden_units, weights, params.learning_rate
    )
    fitted = model.fit(
        features.inputs(), labels, batch_size=params.batch_size, epochs=params.epochs, verbose=0
    )
    return CoordinatingNetwork(
        model, features.encoder, list(map(tuple, objectives)), pd.DataFrame(fitted.history)
    )


def fold_predictions(
    events: pd.DataFrame,
    objectives: Objectives,
    spec: CoordinatingInputs,
    params: CoordinatingParams,
    fold: int,
) -> np.ndarray:
    """p per objective for the rows `fold` holds out (in row order), from a network fit on the
    other folds' rows and seeded by the fold: the folds are independent of one another."""
    started = time.perf_counter()
    held_out = fold_assignment(len(events), params.folds, params.seed) == fold
    network = fit_final(
        events[~held_out], objectives, spec, replace(params, seed=params.seed + 1 + fold)
    )
    predicted = network.predict(events[held_out]).to_numpy()
    log.info(
        "coordinating fold %d/%d: %.1f s", fold + 1, params.folds, time.perf_counter() - started
    )
    return predicted


def out_of_fold_predictions(
    events: pd.DataFrame,
    objectives: Objectives,
    spec: CoordinatingInputs,
    params: CoordinatingParams,
) -> pd.DataFrame:
    """p_<objective> per event from the model of the one fold that held it out, plus `fold`.

    Folds are plain shuffled KFold, not grouped by user: no input identifies a user (only
    coarse user features), and learning a user's habits from their other events is what the
    CN should do; the leak cross-fitting closes is a model memorizing the event's own labels."""
    per_fold = [
        fold_predictions(events, objectives, spec, params, fold) for fold in range(params.folds)
    ]
    return combine_folds(events, objectives, params, per_fold)


def _padded_profiles(profiles: pd.Series, n_columns: int) -> np.ndarray:
    """Each row's active profile columns shifted by one, zero-padded to the longest row."""
    lists = [
        np.asarray(v, dtype=np.int64).ravel()
        if isinstance(v, list | np.ndarray)
        else np.zeros(0, np.int64)
        for v in profiles
    ]
    lengths = np.array([len(v) for v in lists], dtype=np.int64)
    flat = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= n_columns):
        raise ValueError(f"profile indices must lie in [0, {n_columns})")
    padded = np.zeros((len(lists), max(int(lengths.max(initial=0)), 1)), dtype=np.int32)
    rows = np.repeat(np.arange(len(lists)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, cols] = flat + 1
    return padded
