"""Stage 2, non-linear: the per-objective two-tower model (user features vs video profile).

Trained on one objective's routed positives with sampled negatives; yields a vector per video,
cold videos included, since the item tower reads the video's profile and not only its id.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import ops

from models.keras_parts import (
    EmbeddingBag,
    UserFeatureEncoder,
    category_codes,
    category_keys,
    predict_in_chunks,
)
from models.metrics import sampled_auc
from models.params import TwoTowerParams
from models.vectors import ItemVectors

log = logging.getLogger(__name__)


def _embedding_init(dim: int) -> keras.initializers.Initializer:
    # Vectors of norm about 1, like the one-hot inputs beside them: with Keras' default (+-0.05)
    # SGD took several times as many epochs to leave the base-rate loss in trials.
    return keras.initializers.RandomNormal(stddev=1 / np.sqrt(dim))


def _embedding_init_config(dim: int) -> dict:
    """`_embedding_init` as a config, for a layer that makes its initializer when built."""
    return {"class_name": "RandomNormal", "config": {"stddev": float(1 / np.sqrt(dim))}}


@dataclass(frozen=True)
class FeatureSpec:
    """Vocabularies and scalings learnt from the training positives; index 0 is always OOV."""

    user_ids: list[str]
    categorical: dict[str, list[str]]
    numeric: dict[str, tuple[float, float]]  # column -> (mean, std)
    video_ids: list[str]  # videos with training positives; every other video shares index 0
    attribute_of_column: list[int]
    profile_length: int

    @property
    def users(self) -> UserFeatureEncoder:
        """The shared encoder of the user features; a missing category is unknown (index 0)."""
        return UserFeatureEncoder(self.categorical, self.numeric, missing_category=False)


@keras.saving.register_keras_serializable(package="related_videos")
class KnownIdEmbedding(keras.layers.Embedding):
    """An id embedding whose OOV index 0 maps to zeros, so a video without an id of its own
    (no training positives, or hidden by id_dropout) is placed by its attributes alone."""

    def call(self, inputs):
        return super().call(inputs) * ops.cast(inputs > 0, self.compute_dtype)[..., None]


def make_spec(
    train_positives: pd.DataFrame,
    items: pd.DataFrame,
    user_categorical: list[str],
    user_numeric: list[str],
    attribute_of_column: np.ndarray,
) -> FeatureSpec:
    users = UserFeatureEncoder.fit(
        train_positives, user_categorical, user_numeric, missing_category=False
    )
    lengths = items["profile_indices"].map(len)
    return FeatureSpec(
        user_ids=sorted(train_positives["user_id"].astype(str).unique()),
        categorical=users.vocabularies,
        numeric=users.scaling,
        video_ids=sorted(train_positives["video_id"].astype(str).unique()),
        attribute_of_column=[int(a) for a in attribute_of_column],
        profile_length=max(int(lengths.max()) if len(lengths) else 0, 1),
    )


def _index(vocabulary: list[str], values: pd.Series) -> np.ndarray:
    """Position + 1 in the vocabulary; 0 for unseen or missing values."""
    return category_codes(vocabulary, category_keys(values, missing_category=False))


def encode_users(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The user tower's inputs, one row per frame row."""
    inputs = {"user_index": _index(spec.user_ids, frame["user_id"])}
    users = spec.users
    for position, codes in enumerate(users.codes(frame)):
        inputs[f"user_cat_{position}"] = codes
    if spec.numeric:
        inputs["user_numeric"] = users.numeric(frame)
    return inputs


def encode_items(items: pd.DataFrame, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The item tower's inputs, one row per catalog video: id index and padded profile."""
    profile = np.zeros((len(items), spec.profile_length), dtype=np.int32)
    for row, columns in enumerate(items["profile_indices"]):
        columns = np.asarray(columns, dtype=np.int64)[: spec.profile_length]
        profile[row, : len(columns)] = columns + 1
    return {"video_index": _index(spec.video_ids, items["video_id"]), "profile": profile}


def build_towers(
    spec: FeatureSpec, params: TwoTowerParams
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(user_model, item_model, train_model); the towers end in unit vectors, train_model
    outputs the probability sigmoid(scale * cosine + bias) and is compiled."""
    dim = params.embedding_dim

    def tower(inputs: dict, parts: list, name: str) -> keras.Model:
        hidden = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
        for units in params.tower_units[:-1]:
            hidden = keras.layers.Dense(units, activation="relu")(hidden)
        # The last layer is linear: a ReLU there makes every vector non-negative (cosine in
        # [0, 1]) and the towers collapsed to constant outputs in trials, with SGD and Adam.
        # Its bias starts random, not zero: a video with neither id nor attributes would else
        # sit at the origin, where the L2 normalization's gradient is unbounded.
        hidden = keras.layers.Dense(
            params.tower_units[-1], bias_initializer=_embedding_init(params.tower_units[-1])
        )(hidden)
        return keras.Model(inputs, keras.layers.UnitNormalization()(hidden), name=name)

    user_inputs = {"user_index": keras.Input(shape=(), dtype="int32", name="user_index")}
    user_parts = [
        keras.layers.Embedding(
            len(spec.user_ids) + 1, dim, embeddings_initializer=_embedding_init(dim)
        )(user_inputs["user_index"])
    ]
    for position, vocabulary in enumerate(spec.categorical.values()):
        name, tokens = f"user_cat_{position}", len(vocabulary) + 1
        user_inputs[name] = keras.Input(shape=(), dtype="int32", name=name)
        encode = (
            keras.layers.CategoryEncoding(tokens, output_mode="one_hot")
            if tokens <= params.one_hot_max_tokens
            else keras.layers.Embedding(tokens, dim, embeddings_initializer=_embedding_init(dim))
        )
        user_parts.append(encode(user_inputs[name]))
    if spec.numeric:
        user_inputs["user_numeric"] = keras.Input(
            shape=(2 * len(spec.numeric),), name="user_numeric"
        )
        user_parts.append(user_inputs["user_numeric"])
    user_model = tower(user_inputs, user_parts, "user_tower")

    item_inputs = {
        "video_index": keras.Input(shape=(), dtype="int32", name="video_index"),
        "profile": keras.Input(shape=(spec.profile_length,), dtype="int32", name="profile"),
    }
    item_parts = [
        KnownIdEmbedding(len(spec.video_ids) + 1, dim, embeddings_initializer=_embedding_init(dim))(
            item_inputs["video_index"]
        ),
        # Per attribute, the mean embedding of the video's active profile columns.
        EmbeddingBag(
            len(spec.attribute_of_column) + 1,
            dim,
            group_of_id=spec.attribute_of_column,
            embeddings_initializer=_embedding_init_config(dim),
        )(item_inputs["profile"]),
    ]
    item_model = tower(item_inputs, item_parts, "item_tower")

    all_inputs = {**user_inputs, **item_inputs}
    cosine = keras.layers.Dot(axes=1)([user_model(user_inputs), item_model(item_inputs)])
    probability = keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer=keras.initializers.Constant(params.initial_cosine_scale),
        # Start at the base rate (1 positive per `negatives`): otherwise the towers' first move
        # is to turn every user away from every video to fit it, and they take long to recover.
        bias_initializer=keras.initializers.Constant(-np.log(params.negatives_per_positive)),
    )(cosine)
    train_model = keras.Model(all_inputs, probability, name="two_tower")
    momentum = {"momentum": params.sgd_momentum} if params.optimizer.lower() == "sgd" else {}
    optimizer = keras.optimizers.get(
        {
            "class_name": params.optimizer,
            "config": {"learning_rate": params.learning_rate, **momentum},
        }
    )
    train_model.compile(optimizer=optimizer, loss=params.loss)
    return user_model, item_model, train_model


def sample_pairs(
    positive_items: np.ndarray,
    negative_pool: np.ndarray,
    negatives: int,
    rng: np.random.Generator,
    id_dropout: float = 0.0,
) -> dict[str, np.ndarray]:
    """One epoch of pairs, shuffled: each positive row (user_row) with its video (label 1) and
    `negatives` uniform draws from the pool (label 0); hide_id marks pairs whose id is hidden."""
    n = len(positive_items)
    item_rows = negative_pool[rng.integers(0, len(negative_pool), size=(n, 1 + negatives))]
    item_rows[:, 0] = positive_items
    labels = np.zeros((n, 1 + negatives), dtype=np.float32)
    labels[:, 0] = 1.0
    order = rng.permutation(item_rows.size)
    return {
        "user_row": np.repeat(np.arange(n), 1 + negatives)[order],
        "item_row": item_rows.ravel()[order],
        "label": labels.ravel()[order],
        "hide_id": rng.random(item_rows.size) < id_dropout,
    }


def training_arrays(
    users: dict[str, np.ndarray], catalog: dict[str, np.ndarray], pairs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(x, y) of train_model for the given pairs (all of `sample_pairs`, or a slice of it)."""
    x = {k: v[pairs["user_row"]] for k, v in users.items()}
    x.update({k: v[pairs["item_row"]] for k, v in catalog.items()})
    x["video_index"] = np.where(pairs["hide_id"], 0, x["video_index"])
    return x, pairs["label"]


def pair_batches(
    users: dict[str, np.ndarray],
    catalog: dict[str, np.ndarray],
    positive_items: np.ndarray,
    params: TwoTowerParams,
    rng: np.random.Generator,
    train: bool,
) -> tuple[tf.data.Dataset, int]:
    """(dataset, batches per epoch): the pairs of `sample_pairs` in batches, gathered inside
    tf.data and prefetched beside the training step. For training, each epoch draws fresh
    negatives and hidden ids and the dataset runs `max_epochs` epochs; for validation, one
    draw, the same pairs every epoch. The first epoch is drawn now, so draws follow call order.
    """
    # Negatives only among videos with training positives: a video no one watched would be
    # a negative for everyone, and the towers learn "never watched" from its exact attribute
    # combination, which pulled all cold videos together (cosine 0.78 between cold videos of
    # different series vs 0.5 to their own series) instead of next to their series.
    pool = np.flatnonzero(catalog["video_index"] > 0)
    dropout = params.id_dropout if train else 0.0

    def draw() -> tuple[np.ndarray, ...]:
        pairs = sample_pairs(positive_items, pool, params.negatives_per_positive, rng, dropout)
        return tuple(pairs[k] for k in ("user_row", "item_row", "label", "hide_id"))

    first = [draw()]
    steps = math.ceil(len(first[0][0]) / params.batch_size)
    user_tensors = {k: tf.constant(v) for k, v in users.items()}
    item_tensors = {k: tf.constant(v) for k, v in catalog.items()}

    def gather(user_row, item_row, label, hide_id):
        x = {k: tf.gather(v, user_row) for k, v in user_tensors.items()}
        x.update({k: tf.gather(v, item_row) for k, v in item_tensors.items()})
        x["video_index"] = tf.where(hide_id, tf.zeros_like(x["video_index"]), x["video_index"])
        return x, label

    if train:

        def epoch(_) -> tuple[np.ndarray, ...]:
            return first.pop() if first else draw()

        types = (tf.int64, tf.int64, tf.float32, tf.bool)

        def pairs_of_epoch(number):
            arrays = tf.numpy_function(epoch, [number], types, stateful=True)
            for array in arrays:
                array.set_shape([None])
            return tuple(arrays)

        # Batched within each epoch: an epoch's last, smaller batch is not filled from the next.
        batches = (
            tf.data.Dataset.range(params.max_epochs)
            .map(pairs_of_epoch)
            .flat_map(
                lambda *arrays: tf.data.Dataset.from_tensor_slices(arrays).batch(params.batch_size)
            )
        )
    else:
        batches = tf.data.Dataset.from_tensor_slices(first[0]).batch(params.batch_size)
    dataset = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )
    # tf.data's autotuning thread sleeps up to a minute between rounds, and deleting the
    # iterator waited for it: with another process on the cores, `fit` returned 14 s to 55 s
    # after its last epoch. Without it AUTOTUNE means one call per core and a small buffer.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options), steps


@dataclass
class TwoTowerModel:
    """The trained towers, the encoded catalog they were trained with, and the training curve."""

    user_model: keras.Model
    item_model: keras.Model
    spec: FeatureSpec
    catalog_ids: np.ndarray
    catalog: dict[str, np.ndarray]
    history: dict[str, list[float]]

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def item_vectors(self) -> ItemVectors:
        """One unit vector per catalog video; a cold video's comes from its profile alone."""
        return ItemVectors.from_raw(
            self.catalog_ids, predict_in_chunks(self.item_model, self.catalog)
        )

    def user_vectors(self, frame: pd.DataFrame) -> np.ndarray:
        """Unit vectors for rows of user features (user_id plus the feature columns)."""
        return predict_in_chunks(self.user_model, encode_users(frame, self.spec))

    def auc(
        self, holdout_positives: pd.DataFrame, items: pd.DataFrame, rng: np.random.Generator
    ) -> float:
        """Pooled holdout AUC (`sampled_auc`) of held-out positives against one uniform catalog
        video each, scored with the positive's user row; ranking by cosine is ranking by
        probability."""
        if holdout_positives.empty:
            raise ValueError("two-tower: no held-out positives to compute an AUC on")
        _check_known_videos(holdout_positives, items)
        item_vecs = predict_in_chunks(self.item_model, encode_items(items, self.spec))
        rows = pd.Index(items["video_id"].astype(str)).get_indexer(
            holdout_positives["video_id"].astype(str)
        )
        users = self.user_vectors(holdout_positives)
        negatives = rng.integers(0, len(items), size=len(rows))
        positive = np.einsum("ij,ij->i", users, item_vecs[rows])
        negative = np.einsum("ij,ij->i", users, item_vecs[negatives])
        return sampled_auc(positive, negative)

    def save(self, path: str | Path) -> None:
        """A folder: the two towers in Keras' .keras format, the spec and curve, the catalog."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.user_model.save(folder / "user_tower.keras")
        self.item_model.save(folder / "item_tower.keras")
        state = {"spec": asdict(self.spec), "history": self.history}
        (folder / "two_tower.json").write_text(json.dumps(state))
        np.savez(folder / "catalog.npz", catalog_ids=self.catalog_ids.astype(str), **self.catalog)

    @classmethod
    def load(cls, path: str | Path) -> TwoTowerModel:
        folder = Path(path)
        state = json.loads((folder / "two_tower.json").read_text())
        spec = state["spec"]
        spec["numeric"] = {c: tuple(v) for c, v in spec["numeric"].items()}
        with np.load(folder / "catalog.npz") as stored:
            arrays = dict(stored)
        return cls(
            user_model=keras.saving.load_model(folder / "user_tower.keras"),
            item_model=keras.saving.load_model(folder / "item_tower.keras"),
            spec=FeatureSpec(**spec),
            catalog_ids=arrays.pop("catalog_ids"),
            catalog=arrays,
            history=state["history"],
        )


def _check_known_videos(positives: pd.DataFrame, items: pd.DataFrame) -> None:
    unknown = ~positives["video_id"].astype(str).isin(items["video_id"].astype(str))
    if unknown.any():
        examples = positives.loc[unknown, "video_id"].astype(str).unique()[:5].tolist()
        raise ValueError(
            f"two-tower: {int(unknown.sum())} positives of videos not in items, e.g. {examples}"
        )


def _check_inputs(positives, items, columns, attribute_of_column, n_columns) -> None:
    if positives.empty:
        raise ValueError("two-tower: no positives to train on")
    missing = [c for c in ["user_id", "video_id", *columns] if c not in positives.columns]
    if missing:
        raise ValueError(f"two-tower: positives lack columns {missing}")
    if items["video_id"].astype(str).duplicated().any():
        raise ValueError("two-tower: items has repeated video ids")
    _check_known_videos(positives, items)
    if len(attribute_of_column) != n_columns:
        raise ValueError(
            f"two-tower: {len(attribute_of_column)} attributes for {n_columns} columns"
        )
    used = np.concatenate([np.asarray(p, dtype=np.int64) for p in items["profile_indices"]] or [[]])
    if len(used) and (used.min() < 0 or used.max() >= n_columns):
        raise ValueError(f"two-tower: profile indices outside [0, {n_columns})")


def fit_two_tower(
    positives: pd.DataFrame,
    items: pd.DataFrame,
    user_categorical: list[str],
    user_numeric: list[str],
    attribute_of_column: np.ndarray,
    n_columns: int,
    params: TwoTowerParams,
    progress: Callable[[int, dict], None] | None = None,
) -> TwoTowerModel:
    """Train on one objective's positives; early stopping on a seeded validation share."""
    _check_inputs(
        positives, items, [*user_categorical, *user_numeric], attribute_of_column, n_columns
    )
    if params.negatives_per_positive < 1:
        raise ValueError("two-tower: negatives_per_positive must be at least 1")
    keras.utils.set_random_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    positives = positives.reset_index(drop=True)
    if 0 < params.max_positives < len(positives):
        keep = np.sort(rng.choice(len(positives), params.max_positives, replace=False))
        positives = positives.iloc[keep].reset_index(drop=True)
    order = rng.permutation(len(positives))
    n_validation = min(round(params.validation_share * len(positives)), len(positives) - 1)
    validation_rows, train_rows = order[:n_validation], order[n_validation:]
    train_positives = positives.iloc[train_rows]

    spec = make_spec(train_positives, items, user_categorical, user_numeric, attribute_of_column)
    catalog = encode_items(items, spec)
    users = encode_users(positives, spec)
    catalog_row = pd.Index(items["video_id"].astype(str)).get_indexer(
        positives["video_id"].astype(str)
    )
    log.info(
        "two-tower: %d training, %d validation positives; %d of %d videos have positives",
        *(len(train_rows), n_validation, len(spec.video_ids), len(items)),
    )
    user_model, item_model, train_model = build_towers(spec, params)

    def batches(rows: np.ndarray, train: bool) -> tuple[tf.data.Dataset, int]:
        subset = {k: v[rows] for k, v in users.items()}
        return pair_batches(subset, catalog, catalog_row[rows], params, rng, train)

    monitor = "val_loss" if n_validation else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor, patience=params.early_stopping_patience, restore_best_weights=True
        )
    ]
    if progress is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=progress))
    training, steps = batches(train_rows, train=True)
    fitted = train_model.fit(
        training,
        steps_per_epoch=steps,  # one draw per epoch; the dataset holds max_epochs of them
        validation_data=batches(validation_rows, train=False)[0] if n_validation else None,
        epochs=params.max_epochs,
        shuffle=False,  # the pairs are shuffled when drawn, from the seeded generator
        callbacks=callbacks,
        verbose=0,
    )
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    log.info(
        "two-tower: %d epochs, best %s %.4f", len(history["loss"]), monitor, min(history[monitor])
    )
    return TwoTowerModel(
        user_model, item_model, spec, items["video_id"].astype(str).to_numpy(), catalog, history
    )
