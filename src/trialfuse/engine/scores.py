"""How a fold is scored, for every family: the run's search metric on the validation rows
(the trial's score, higher is better) and each side's loss (`Task.loss`: squared error for
numbers, absolute error under MAE, log-loss for classes: the run's, whatever a model trained on); R² beside
them, as the source's protocol answers it (NaN for classes).

A model that predicts non-finite values scores NaN rather than raising, so the scheduler
can fail its trial with a clear reason.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import r2_score

from trialfuse.engine.row_sample import sampled
from trialfuse.task import Task

# Training rows a tree fold's train loss is read on. Predicting every training row can cost more
# than the fit where a model has thousands of trees (a tree per class per round), and no deadline
# stops a predict: a 60 s run on a 5-class table overran to 95 s that way (bench/results/
# 2026-12-06-cpu-2core-screens-and-overrun.json). A sample reads the same loss for a fixed cost.
TRAIN_LOSS_ROWS = 2_000


def train_loss_rows(rows: int) -> np.ndarray:
    """Which of a fold's `rows` training rows its train loss is read on: all, up to
    TRAIN_LOSS_ROWS, else that many drawn once with a fixed seed (a loss, not a search score,
    so a sample's noise costs nothing and every fold's run is repeatable)."""
    return sampled(np.arange(rows), TRAIN_LOSS_ROWS, 0)


def fold_scores(task: Task, y_train: np.ndarray, pred_train: np.ndarray, y_val: np.ndarray,
                pred_val: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    if not (np.all(np.isfinite(pred_val)) and np.all(np.isfinite(pred_train))):
        return {"score": nan, "r2": nan, "val_loss": nan, "train_loss": nan}
    r2 = nan if task.is_classification else float(r2_score(y_val, pred_val))
    return {"score": task.score(y_val, pred_val), "r2": r2, "val_loss": task.loss(y_val, pred_val),
            "train_loss": task.loss(y_train, pred_train)}
