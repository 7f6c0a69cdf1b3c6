"""The fits of stage 2 that can run in a worker process (pipelines.parallel): a fold of the
coordinating network, its final fit, one objective's two-tower model; plain data in and out.

A frame shared by several jobs is passed as the path of its pickle (written once), else as is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.params import CoordinatingParams, TwoTowerParams
from models.routing import CoordinatingInputs
from models.vectors import ItemVectors

# The networks (models.coordinating, models.two_tower) are imported by the jobs that fit them:
# importing TensorFlow takes seconds, and a chain that reuses every fit never needs it.

log = logging.getLogger(__name__)
Objectives = list[tuple[str, str]]


def frame_of(frame: pd.DataFrame | Path) -> pd.DataFrame:
    return frame if isinstance(frame, pd.DataFrame) else pd.read_pickle(frame)


def coordinating_fold(
    frame: pd.DataFrame | Path,
    objectives: Objectives,
    inputs: CoordinatingInputs,
    params: CoordinatingParams,
    fold: int,
) -> np.ndarray:
    """The predictions for the rows `fold` holds out."""
    from models.coordinating import fold_predictions

    return fold_predictions(frame_of(frame), objectives, inputs, params, fold)


def coordinating_final(
    frame: pd.DataFrame | Path,
    objectives: Objectives,
    inputs: CoordinatingInputs,
    params: CoordinatingParams,
    path: Path,
) -> list[dict[str, float]]:
    """The network fit on every row, saved to `path`; its training curve, one dict per epoch."""
    from models.coordinating import fit_final

    network = fit_final(frame_of(frame), objectives, inputs, params)
    network.save(path)
    return network.history.to_dict("records")


@dataclass
class TwoTowerFit:
    history: dict[str, list[float]]
    auc: float
    epochs_run: int
    vectors: ItemVectors
    seconds: float


@dataclass(frozen=True)
class TowerInputs:
    """What every objective's two-tower fit shares: the catalog and its vocabulary, the user
    feature columns."""

    items: pd.DataFrame
    attribute_of_column: np.ndarray
    n_columns: int
    user_categorical: tuple[str, ...]
    user_numeric: tuple[str, ...]


def two_tower(
    name: str,
    positives: pd.DataFrame,
    holdout: np.ndarray,
    inputs: TowerInputs,
    params: TwoTowerParams,
    path: Path,
    seed: int,
) -> TwoTowerFit:
    """One objective's towers on its positives but the `holdout` rows, saved to `path`, with the
    AUC on the held-out rows and the item vectors."""
    from models.two_tower import fit_two_tower

    started = time.perf_counter()
    train, held = positives[~holdout], positives[holdout]
    model = fit_two_tower(
        train,
        inputs.items,
        list(inputs.user_categorical),
        list(inputs.user_numeric),
        inputs.attribute_of_column,
        inputs.n_columns,
        params,
        progress=lambda epoch, logs: _epoch_done(name, epoch, logs),
    )
    auc = holdout_auc(lambda: model.auc(held, inputs.items, np.random.default_rng(seed)))
    model.save(path)
    return TwoTowerFit(
        model.history, auc, model.epochs_run, model.item_vectors(), time.perf_counter() - started
    )


def holdout_auc(compute: Callable[[], float]) -> float:
    """AUC on the held-out positives; NaN (with a warning) when there are too few to tell."""
    try:
        return float(compute())
    except ValueError as error:
        log.warning("no held-out AUC: %s", error)
        return float("nan")


def _epoch_done(name: str, epoch: int, logs: dict) -> None:
    shown = ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items() if k.endswith("loss"))
    log.info("%s: epoch %d: %s", name, epoch + 1, shown)
