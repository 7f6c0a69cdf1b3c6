"""The shared Keras pieces: the user-feature encoder, EmbeddingBag (plain and per group), and
chunked prediction."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from models.keras_parts import EmbeddingBag, UserFeatureEncoder, predict_in_chunks

FRAME = pd.DataFrame({"gender": ["f", None, "m"], "level": [1.0, np.nan, 3.0]})


@pytest.mark.parametrize("missing_category", [True, False])
def test_encoder_codes_and_scaling(missing_category):
    encoder = UserFeatureEncoder.fit(FRAME, ["gender"], ["level"], missing_category)
    assert encoder.scaling == {"level": (2.0, 1.0)}
    codes = encoder.codes(FRAME.assign(gender=["m", None, "x"]))[0]
    vocabulary = encoder.vocabularies["gender"]
    missing = 1 + vocabulary.index("<missing>") if missing_category else 0
    assert codes.tolist() == [1 + vocabulary.index("m"), missing, 0]
    np.testing.assert_allclose(encoder.numeric(FRAME), [[-1, 0], [0, 1], [1, 0]])


def test_embedding_bag_mean_sum_and_groups():
    ids = np.array([[1, 2, 0], [3, 0, 0], [0, 0, 0]], dtype=np.int32)
    for pooling in ("mean", "sum"):
        bag = EmbeddingBag(4, 2, pooling)
        out = keras.ops.convert_to_numpy(bag(ids))
        table = keras.ops.convert_to_numpy(bag.embeddings)
        first = table[1] + table[2]
        np.testing.assert_allclose(out[0], first / 2 if pooling == "mean" else first, rtol=1e-6)
        np.testing.assert_allclose(out[2], 0.0)
    grouped = EmbeddingBag(4, 2, group_of_id=[0, 0, 1])
    out = keras.ops.convert_to_numpy(grouped(ids))
    table = keras.ops.convert_to_numpy(grouped.embeddings)
    np.testing.assert_allclose(out[0], np.concatenate([(table[1] + table[2]) / 2, [0, 0]]))
    np.testing.assert_allclose(out[1], np.concatenate([[0, 0], table[3]]))
    again = EmbeddingBag.from_config(grouped.get_config())
    assert again.group_of_id == [0, 0, 1] and again.pooling == "mean"


def test_predict_in_chunks_matches_one_call():
    inputs = {"x": keras.Input((3,), name="x")}
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs["x"]))
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    whole = keras.ops.convert_to_numpy(model({"x": x}))
    np.testing.assert_allclose(predict_in_chunks(model, {"x": x}, chunk=3), whole, rtol=1e-6)
    assert predict_in_chunks(model, {"x": x[:0]}).shape == (0, 2)
