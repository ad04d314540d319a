"""How a fold is scored, for every family: the run's search metric on the validation rows
(the trial's score, higher is better) and each side's loss (`Task.loss`: squared error for
numbers, log-loss for classes); R² beside them, as the source's protocol answers it (NaN for
classes).

A model that predicts non-finite values scores NaN rather than raising, so the scheduler
can fail its trial with a clear reason.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import r2_score

from trialfuse.task import Task

# Training rows a tree fold's train loss is read on. Predicting every training row cost more
# than the fit where a model has thousands of trees: on a 5-class table (diamonds' cut, 16,000
# search rows, 2 cores) LightGBM's XT start ran 1,072 rounds (5,360 trees) in 7.2 s and then took
# 4.0 s alone and ~20 s beside another worker to predict its 12,800 training rows, no deadline
# able to stop it; a run given 60 s took 95.
TRAIN_LOSS_ROWS = 2_000


def train_loss_rows(rows: int) -> np.ndarray:
    """Which of a fold's `rows` training rows its train loss is read on: all, up to
    TRAIN_LOSS_ROWS, else that many drawn once with a fixed seed (a loss, not a search score,
    so a sample's noise costs nothing and every fold's run is repeatable)."""
    if rows <= TRAIN_LOSS_ROWS:
        return np.arange(rows)
    return np.sort(np.random.default_rng(0).choice(rows, TRAIN_LOSS_ROWS, replace=False))


def fold_scores(task: Task, y_train: np.ndarray, pred_train: np.ndarray, y_val: np.ndarray,
                pred_val: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    if not (np.all(np.isfinite(pred_val)) and np.all(np.isfinite(pred_train))):
        return {"score": nan, "r2": nan, "val_loss": nan, "train_loss": nan}
    r2 = nan if task.is_classification else float(r2_score(y_val, pred_val))
    return {"score": task.score(y_val, pred_val), "r2": r2, "val_loss": task.loss(y_val, pred_val),
            "train_loss": task.loss(y_train, pred_train)}
