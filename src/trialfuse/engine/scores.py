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


def fold_scores(task: Task, y_train: np.ndarray, pred_train: np.ndarray, y_val: np.ndarray,
                pred_val: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    if not (np.all(np.isfinite(pred_val)) and np.all(np.isfinite(pred_train))):
        return {"score": nan, "r2": nan, "val_loss": nan, "train_loss": nan}
    r2 = nan if task.is_classification else float(r2_score(y_val, pred_val))
    return {"score": task.score(y_val, pred_val), "r2": r2, "val_loss": task.loss(y_val, pred_val),
            "train_loss": task.loss(y_train, pred_train)}
