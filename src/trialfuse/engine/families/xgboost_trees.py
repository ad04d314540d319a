"""The XGBoost family: histogram trees, early stopping on the fold's validation rows."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from trialfuse.engine.families import STOPPED, DeadlineReached, Fitted, check_deadline, past_deadline
from trialfuse.engine.families.trees import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, count_mean
from trialfuse.task import NUMBERS, Objective, Task


class _Deadline(xgb.callback.TrainingCallback):
    """Stops training past the deadline or when told to (past_deadline); fit then raises DeadlineReached."""

    def __init__(self, deadline: float | None):
        self.deadline, self.reached = deadline, False

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        self.reached = past_deadline(self.deadline)
        return self.reached


# each early-stops on its own loss (the absolute error's default metric is MAE, Poisson's its negative
# log-likelihood); the classifiers pick their objective from the classes
OBJECTIVES = {Objective.SQUARED_ERROR: {"objective": "reg:squarederror"},
              Objective.ABSOLUTE_ERROR: {"objective": "reg:absoluteerror"},
              Objective.POISSON: {"objective": "count:poisson"},
              Objective.BINARY_LOG_LOSS: {"eval_metric": "logloss"},
              Objective.MULTICLASS_LOG_LOSS: {"eval_metric": "mlogloss"}}


def fit(params: dict[str, Any], X_train, y_train, X_val=None, y_val=None, *, device: str = "cpu",
        threads: int | None = None, seed: int = 0, rounds: int | None = None, deadline: float | None = None,
        task: Task = NUMBERS, categorical: Sequence[int] = ()) -> Fitted:
    """The task's objective (OBJECTIVES); for classes (y: codes 0..K-1) the logistic or softmax
    one, early stopping on the validation log-loss."""
    check_deadline(deadline)
    watch = X_val is not None
    clock = _Deadline(deadline)
    learner = xgb.XGBClassifier if task.is_classification else xgb.XGBRegressor
    model = learner(
        n_estimators=MAX_ROUNDS if rounds is None else int(rounds),
        early_stopping_rounds=EARLY_STOPPING_ROUNDS if watch else None,
        tree_method="hist",
        device="cuda" if device.startswith("cuda") else "cpu",  # the worker sees one GPU
        n_jobs=threads,
        random_state=seed,
        callbacks=[clock],
        **OBJECTIVES[task.objective],
        **({"base_score": count_mean(y_train)} if task.objective == Objective.POISSON else {}),
        **params,
    )
    model.fit(X_train, y_train, sample_weight=task.row_weights(y_train), eval_set=[(X_val, y_val)] if watch else None,
              verbose=False)
    if clock.reached:
        raise DeadlineReached(STOPPED)
    ran = model.get_booster().num_boosted_rounds()
    best = model.best_iteration + 1 if watch else ran
    return Fitted(model=model.get_booster(), best_rounds=best, rounds_run=ran)


def predict(model: xgb.Booster, X: np.ndarray) -> np.ndarray:
    best = model.attr("best_iteration")
    limit = (0, int(best) + 1) if best is not None else (0, 0)
    return model.predict(xgb.DMatrix(np.asarray(X, dtype=np.float32)), iteration_range=limit).astype(np.float64)


def save(model: xgb.Booster, directory) -> str:
    """The model up to its best round only (an early-stopped fold's model ran 50 more), so
    the saved file predicts the same with XGBoost's own `Booster.predict`, trialfuse absent."""
    name = "model.json"
    best = model.attr("best_iteration")
    if best is not None and int(best) + 1 < model.num_boosted_rounds():
        model = model[: int(best) + 1]
    model.save_model(str(Path(directory) / name))
    return name


def load(path) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(str(path))
    return booster


def columns_used(model: xgb.Booster) -> np.ndarray:
    """The columns some split reads (every round's, the kept ones among them): no other moves a
    prediction. Unnamed columns are f0, f1, ... to XGBoost."""
    return np.array(sorted(int(name[1:]) for name in model.get_score(importance_type="weight")), dtype=np.int64)


def contributions(model: xgb.Booster, X: np.ndarray) -> np.ndarray:
    """Exact TreeSHAP values [rows, features] (the bias column dropped), up to the best round;
    for several classes [rows, classes, features], in log-odds (two classes: the second's)."""
    best = model.attr("best_iteration")
    limit = (0, int(best) + 1) if best is not None else (0, 0)
    values = model.predict(xgb.DMatrix(np.asarray(X, dtype=np.float32)), pred_contribs=True, iteration_range=limit)
    return np.asarray(values, dtype=np.float64)[..., :-1]
