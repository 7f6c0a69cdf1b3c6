"""The training hook: checks a data set runs on what stage 2 fits (routing, item vectors), without
production training knowing them; only the synthetic data set has some, its truth checks.

This is the one module of pipelines/ besides the generate and experiment steps that reaches
simulator/ (tests/pipelines/test_layers.py), and only when the synthetic data set trains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from models.vectors import ItemVectors
from pipelines import workspace
from pipelines.config import Config


class TrainingChecks(Protocol):
    """Checks on one training set; each returns MLflow metrics for the run being logged."""

    def routing(
        self, events: pd.DataFrame, p_click: np.ndarray, threshold: float
    ) -> dict[str, float]:
        """On the coordinating network's out-of-fold click probabilities, aligned with `events`."""
        ...

    def item_vectors(self, vectors: ItemVectors) -> dict[str, float]:
        """On one objective's item vectors (ALS or two-tower)."""
        ...


def _synthetic_truth(config: Config, events: pd.DataFrame) -> TrainingChecks | None:
    from simulator.truth_checks import TruthChecks

    return TruthChecks.load(workspace.raw_dir(config), events, config.seed)


# data.dataset -> its training checks on a training set (None: nothing to check this time).
TRAINING_CHECKS: dict[str, Callable[[Config, pd.DataFrame], TrainingChecks | None]] = {
    "synthetic": _synthetic_truth,
}


def training_checks(config: Config, events: pd.DataFrame) -> TrainingChecks | None:
    """The checks registered for the configured data set on the training set `events`, if any."""
    make = TRAINING_CHECKS.get(config.data.dataset)
    return None if make is None else make(config, events)
