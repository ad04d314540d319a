"""How a fold is scored, for every family: R² and MSE on validation rows, MSE on training rows;
its search score is the R² (a regression's metric).

A model that predicts non-finite values scores NaN rather than raising, so the scheduler
can fail its trial with a clear reason.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import mean_squared_error, r2_score


def fold_scores(y_train: np.ndarray, pred_train: np.ndarray, y_val: np.ndarray,
                pred_val: np.ndarray) -> dict[str, float]:
    if not (np.all(np.isfinite(pred_val)) and np.all(np.isfinite(pred_train))):
        return {"score": float("nan"), "r2": float("nan"), "val_mse": float("nan"), "train_mse": float("nan")}
    r2 = float(r2_score(y_val, pred_val))
    return {"score": r2, "r2": r2, "val_mse": float(mean_squared_error(y_val, pred_val)),
            "train_mse": float(mean_squared_error(y_train, pred_train))}
