"""The CatBoost family: oblivious trees, early stopping on the fold's validation rows."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from catboost import CatBoost, CatBoostClassifier, CatBoostRegressor, Pool

from trialfuse.engine.families import STOPPED, DeadlineReached, Fitted, check_deadline, past_deadline
from trialfuse.engine.families.trees import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, count_mean
from trialfuse.task import LOG_LOSSES, NUMBERS, Objective, Task


class _Deadline:
    """A CatBoost callback that stops training past the deadline or when told to (past_deadline);
    fit then raises DeadlineReached."""

    def __init__(self, deadline: float | None):
        self.deadline, self.reached = deadline, False

    def after_iteration(self, info) -> bool:  # False stops training
        self.reached = past_deadline(self.deadline)
        return not self.reached


LOSSES = {Objective.SQUARED_ERROR: "RMSE", Objective.ABSOLUTE_ERROR: "MAE", Objective.POISSON: "Poisson",
          Objective.BINARY_LOG_LOSS: "Logloss", Objective.MULTICLASS_LOG_LOSS: "MultiClass"}  # early stopping on
# each one's own


def fit(params: dict[str, Any], X_train, y_train, X_val=None, y_val=None, *, device: str = "cpu",
        threads: int | None = None, seed: int = 0, rounds: int | None = None, deadline: float | None = None,
        task: Task = NUMBERS, categorical: Sequence[int] = ()) -> Fitted:
    check_deadline(deadline)
    watch = X_val is not None
    gpu = device.startswith("cuda")
    clock = None if gpu else _Deadline(deadline)  # GPU: no user callbacks in CatBoost ("not supported for
    # GPU"); there the deadline is checked before training only
    model = (CatBoostClassifier if task.is_classification else CatBoostRegressor)(
        iterations=MAX_ROUNDS if rounds is None else int(rounds),
        loss_function=LOSSES[task.objective],
        random_seed=seed,
        thread_count=threads or -1,
        task_type="GPU" if gpu else "CPU",
        devices="0" if gpu else None,  # the worker sees exactly one GPU: never spread over several
        allow_writing_files=False,
        verbose=False,
        **params,
    )
    start = np.log(count_mean(y_train)) if task.objective == Objective.POISSON else None  # (trees.count_mean)

    def pool(X, y, weight=None) -> Pool:
        return Pool(X, y, weight=weight, baseline=None if start is None else np.full(len(y), start))

    model.fit(pool(X_train, y_train, task.row_weights(y_train)), eval_set=pool(X_val, y_val) if watch else None,
              early_stopping_rounds=EARLY_STOPPING_ROUNDS if watch else None, use_best_model=watch,
              callbacks=[clock] if clock else None)
    if clock and clock.reached:
        raise DeadlineReached(STOPPED)
    if start is not None:  # the start travels in the model: its raw value is the log of the count
        scale, bias = model.get_scale_and_bias()
        model.set_scale_and_bias(scale, bias + start)
    ran = len(next(iter(model.get_evals_result()["validation"].values()))) if watch else model.tree_count_
    return Fitted(model=model, best_rounds=int(model.tree_count_), rounds_run=int(ran))


def predict(model: CatBoost, X: np.ndarray) -> np.ndarray:
    """Values for numbers, class probabilities [rows, K] for classes (what the model's loss says;
    a Poisson model's raw value is the log of its count)."""
    loss = model.get_all_params()["loss_function"]
    kind = "Probability" if loss in {LOSSES[objective] for objective in LOG_LOSSES} else \
        "Exponent" if loss == LOSSES[Objective.POISSON] else "RawFormulaVal"
    return np.asarray(model.predict(np.asarray(X, dtype=np.float64), prediction_type=kind), dtype=np.float64)


def save(model: CatBoostRegressor, directory) -> str:
    name = "model.cbm"
    model.save_model(str(Path(directory) / name))
    return name


def load(path) -> CatBoost:
    model = CatBoost()
    model.load_model(str(path))
    return model


def columns_used(model: CatBoost) -> np.ndarray | None:
    """The columns some split reads, from the model as CatBoost writes it in JSON (its importance
    can be 0 for a split one side of which no training row reached, which still moves a
    prediction); None where a split reads anything but a number column."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.json"
        model.save_model(str(path), format="json")
        written = json.loads(path.read_text())
    flat = [f["flat_feature_index"] for f in written["features_info"].get("float_features", [])]
    splits = [split for tree in written.get("oblivious_trees", []) for split in tree["splits"]]
    if any(split.get("split_type") != "FloatFeature" for split in splits):
        return None
    return np.array(sorted({flat[split["float_feature_index"]] for split in splits}), dtype=np.int64)


def contributions(model: CatBoostRegressor, X: np.ndarray) -> np.ndarray:
    """Exact SHAP values [rows, features] (the bias column dropped); for several classes
    [rows, classes, features], in log-odds (two classes: the second's)."""
    values = model.get_feature_importance(Pool(np.asarray(X, dtype=np.float64)), type="ShapValues")
    return np.asarray(values, dtype=np.float64)[..., :-1]
