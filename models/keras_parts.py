"""Keras pieces shared by the coordinating network and the two-tower model: the user-feature
encoder, the masked mean-pool over padded id lists (EmbeddingBag) and chunked eager prediction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from keras import ops

MISSING = "<missing>"  # a missing categorical value, where it is a category of its own
PREDICT_CHUNK = 8192  # throughput only: predictions do not depend on it


def category_keys(values: pd.Series, missing_category: bool) -> pd.Series | np.ndarray:
    """Values as strings; a missing one is `MISSING` (a category) or None (unknown)."""
    if missing_category:
        return values.astype(object).where(values.notna(), MISSING).astype(str).to_numpy()
    return values.astype(str).where(values.notna(), None)


def category_codes(vocabulary: Sequence[str], keys: pd.Series | np.ndarray) -> np.ndarray:
    """int32 position + 1 of each key in the vocabulary; 0 for an unknown (or None) key."""
    return (pd.Index(vocabulary).get_indexer(keys) + 1).astype(np.int32)


@dataclass(frozen=True)
class UserFeatureEncoder:
    """Categorical vocabularies and numeric standardization fit on training rows; encodes
    categoricals as codes (0 = unknown) and numerics as [standardized, missing flags]."""

    vocabularies: dict[str, list[str]]
    scaling: dict[str, tuple[float, float]]  # column -> (mean, std), std > 0
    missing_category: bool  # a missing categorical is a category of its own, else unknown

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        categorical: Sequence[str],
        numeric: Sequence[str],
        missing_category: bool,
    ) -> UserFeatureEncoder:
        vocabularies = {}
        for column in categorical:
            keys = category_keys(frame[column], missing_category)
            known = keys if missing_category else keys.dropna()
            vocabularies[column] = sorted(set(known))
        scaling = {}
        for column in numeric:
            values = frame[column].astype(float)
            mean, std = np.nan_to_num(values.mean()), np.nan_to_num(values.std(ddof=0))
            scaling[column] = (float(mean), float(std) if std > 0 else 1.0)
        return cls(vocabularies, scaling, missing_category)

    def codes(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """Per categorical column (vocabulary order), its int32 codes: 1 + position, 0 unknown."""
        return [
            category_codes(vocabulary, category_keys(frame[column], self.missing_category))
            for column, vocabulary in self.vocabularies.items()
        ]

    def numeric(self, frame: pd.DataFrame) -> np.ndarray:
        """float32 (n, 2 * numeric columns): standardized values (0 where missing), then the
        missing flags."""
        if not self.scaling:
            return np.zeros((len(frame), 0), dtype=np.float32)
        raw = frame[list(self.scaling)].astype(float).to_numpy()
        mean, std = np.array(list(self.scaling.values())).T
        missing = np.isnan(raw)
        scaled = np.where(missing, 0.0, (raw - mean) / std)
        return np.hstack([scaled, missing]).astype(np.float32)


@keras.saving.register_keras_serializable(package="related_videos")
class EmbeddingBag(keras.layers.Layer):
    """Sum or mean of the embeddings of the non-zero ids of each row (0 pads): a Dense layer on
    a multi-hot vector without ever building the dense matrix.

    With `group_of_id` (the group of ids 1, 2, ...), the mean is taken per group and the groups'
    means are concatenated; a group with no id in a row pools to zeros.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        pooling: str = "mean",
        group_of_id: Sequence[int] | None = None,
        embeddings_initializer: str | dict = "glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim, self.pooling = int(input_dim), int(output_dim), pooling
        if pooling not in ("mean", "sum"):
            raise ValueError(f"EmbeddingBag: pooling {pooling!r}, expected 'mean' or 'sum'")
        self.group_of_id = None if group_of_id is None else [int(g) for g in group_of_id]
        if self.group_of_id is not None:
            if pooling != "mean" or len(self.group_of_id) != self.input_dim - 1:
                raise ValueError("EmbeddingBag: groups need mean pooling and one group per id")
            self.n_groups = max(self.group_of_id, default=-1) + 1
            # Padding (id 0) gets the extra group n_groups, dropped after the one-hot.
            self._group_of_slot = np.array([self.n_groups, *self.group_of_id])
        # Resolved in build, not here: an unseeded Keras initializer draws its seed
        # when made, so making it earlier would change the seeded fits.
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape) -> None:
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim),
            initializer=keras.initializers.get(self.embeddings_initializer),
            name="embeddings",
        )

    def call(self, ids):
        embedded = ops.take(self.embeddings, ids, axis=0)
        if self.group_of_id is not None:
            group = ops.take(ops.convert_to_tensor(self._group_of_slot), ids)
            member = ops.one_hot(group, self.n_groups + 1)[..., : self.n_groups]
            summed = ops.einsum("bla,bld->bad", member, embedded)
            count = ops.maximum(ops.sum(member, axis=1), 1.0)[..., None]
            return ops.reshape(summed / count, (-1, self.n_groups * self.output_dim))
        mask = ops.expand_dims(ops.cast(ops.greater(ids, 0), self.compute_dtype), -1)
        pooled = ops.sum(embedded * mask, axis=1)
        if self.pooling == "mean":
            pooled = pooled / ops.maximum(ops.sum(mask, axis=1), 1.0)
        return pooled

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "pooling": self.pooling,
            "group_of_id": self.group_of_id,
            "embeddings_initializer": self.embeddings_initializer,
        }


def predict_in_chunks(
    model: keras.Model, inputs: dict[str, np.ndarray], chunk: int = PREDICT_CHUNK
) -> np.ndarray:
    """The model's outputs for `inputs` (arrays of equal length), by direct calls in chunks: no
    tf.function to trace, as `model.predict` does for every new model or input size."""
    n = len(next(iter(inputs.values())))
    parts = [
        ops.convert_to_numpy(model({k: v[i : i + chunk] for k, v in inputs.items()}))
        for i in range(0, n, chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)
