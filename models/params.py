"""The stage-2 models' parameters: plain frozen dataclasses, one per model family.

Kept apart from the models themselves so that reading them (the configuration does, at start-up)
imports neither TensorFlow nor scikit-learn; models/als.py, coordinating.py and two_tower.py use
them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AlsParams:
    """One objective's ALS parameters, in the paper's (Spark's) names.

    rank: latent factors; max_iter: alternating sweeps; alpha: confidence = 1 + alpha * value;
    reg_param: L2 weight. Spark multiplies reg_param by each user's (video's) number of
    interactions (ALS-WR); implicit uses it as is. Both engines receive the same value.
    """

    rank: int
    max_iter: int
    reg_param: float
    alpha: float


@dataclass(frozen=True)
class CoordinatingParams:
    hidden_units: Sequence[int]
    folds: int
    epochs: int
    batch_size: int
    learning_rate: float
    threshold: float
    seed: int


@dataclass(frozen=True)
class TwoTowerParams:
    tower_units: tuple[int, ...]
    embedding_dim: int
    # The model's output is a probability (a sigmoid over the scaled cosine): log loss.
    loss: Literal["binary_crossentropy"]
    optimizer: Literal["sgd", "adam"]  # the paper's SGD; Keras' names
    learning_rate: float
    batch_size: int
    max_epochs: int
    early_stopping_patience: int
    validation_share: float
    negatives_per_positive: int
    seed: int
    # A categorical with at most this many values (plus the shared OOV/missing slot) is one-hot
    # encoded; wider ones, and the user id, get an embedding.
    one_hot_max_tokens: int
    # Cosine alone lies in [-1, 1], so sigmoid(cosine) never gets near 0 or 1 and log loss
    # trains poorly; a learnable scale (and bias) on the cosine, started here, is the usual fix.
    initial_cosine_scale: float
    # Plain SGD at the paper's rate sat at the base-rate loss for tens of epochs in trials on
    # small data; momentum (used only when the optimizer is SGD) gets it moving.
    sgd_momentum: float
    # Share of training pairs whose video id is hidden (zero id vector, as for a video without
    # training positives): it teaches the item tower to place a video by its attributes alone,
    # all that a cold video has (as DropoutNet does).
    id_dropout: float
    # Train on at most this many positives (a seeded sample of them); 0: all. The offline
    # evaluation's probes (evaluation.two_tower_probe) use it to judge a model cheaply.
    max_positives: int = 0
