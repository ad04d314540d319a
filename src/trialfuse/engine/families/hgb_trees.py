"""scikit-learn's HistGradientBoostingRegressor (opt-in: `--models hgb`): histogram trees with
native missing values, early stopping on the fold's validation rows.
Served and saved with joblib (sklearn_saved.py).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from trialfuse.engine.families import Fitted, check_deadline
from trialfuse.engine.families.sklearn_saved import load, predict, save  # noqa: F401  (its interface)
from trialfuse.engine.families.trees import EARLY_STOPPING_ROUNDS, MAX_ROUNDS
from trialfuse.task import NUMBERS, Objective, Task

LOSSES = {Objective.SQUARED_ERROR: "squared_error", Objective.ABSOLUTE_ERROR: "absolute_error",
          Objective.POISSON: "poisson", Objective.BINARY_LOG_LOSS: "log_loss",
          Objective.MULTICLASS_LOG_LOSS: "log_loss"}


def fit(params: dict[str, Any], X_train, y_train, X_val=None, y_val=None, *, device: str = "cpu",
        threads: int | None = None, seed: int = 0, rounds: int | None = None, deadline: float | None = None,
        task: Task = NUMBERS, categorical: Sequence[int] = ()) -> Fitted:
    """CPU only (scikit-learn has no GPU learner); threads follow OMP_NUM_THREADS, set per worker.
    With validation rows: stop on them, then refit to the best round count, so the scored model
    is the one the final retrain reproduces (HistGradientBoosting cannot drop its last trees).
    scikit-learn has no per-round callback: the deadline is checked before training only."""
    check_deadline(deadline)
    learner = functools.partial(HistGradientBoostingClassifier if task.is_classification
                                else HistGradientBoostingRegressor, loss=LOSSES[task.objective])
    weights = task.row_weights(y_train)
    if X_val is None:
        model = learner(max_iter=int(rounds or MAX_ROUNDS), early_stopping=False,
                                              random_state=seed, **params).fit(X_train, y_train, sample_weight=weights)
        return Fitted(model=model, best_rounds=model.n_iter_, rounds_run=model.n_iter_)
    model = learner(max_iter=MAX_ROUNDS, early_stopping=True, scoring="loss",
                                          n_iter_no_change=EARLY_STOPPING_ROUNDS, tol=0.0, random_state=seed,
                                          **params)
    model.fit(X_train, y_train, sample_weight=weights, X_val=X_val, y_val=y_val)
    ran = int(model.n_iter_)
    best = max(1, int(np.argmax(model.validation_score_)))  # score 0 is before the first tree
    if best < ran:
        model.set_params(max_iter=best, early_stopping=False).fit(X_train, y_train, sample_weight=weights)
    return Fitted(model=model, best_rounds=best, rounds_run=ran)
