"""trialfuse as scikit-learn estimators: `TrialfuseRegressor` and `TrialfuseClassifier`.

    from sklearn.model_selection import cross_val_score
    cross_val_score(TrialfuseRegressor(timeout="30s"), X, y, cv=3)

`fit(X, y)` is one whole trialfuse run (its own sealed holdout, K-fold search, ensemble and
run directory: a new one per fit, under `runs` or the directory `runs` names) on X and y;
`predict` serves the saved model. Parameters are the run's options, so `clone`, `get_params`,
`set_params` and `GridSearchCV` over the budget work as for any estimator.

scikit-learn's estimator checks (`check_estimator`) that do not apply to a time-budgeted
search, and why:
- fitting tiny or degenerate arrays (one row, one class per fold, 1-3 features with 10-20
  rows) many times over: a run needs rows for a sealed holdout plus K folds and refuses
  fewer with a `UserError`, by design;
- "fit twice gives the same predictions" and "fit is idempotent": with a time budget, how
  many trials fit depends on the machine's speed at that moment (with `trials` instead and
  one worker, a run is reproducible: README, "Pruning and reproducibility");
- the checks' dozens of fits each cost a run (seconds at least) and a run directory.
What does apply is tested: `clone` and `get_params` round-trip, `cross_val_score`, a
`Pipeline` after a `ColumnTransformer`, `GridSearchCV` over a parameter, `score`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from trialfuse.driver.run_dir import new_run_dir
from trialfuse.model import as_features, fit, free_name

TARGET = "target"


class _Trialfuse(BaseEstimator):
    """What both estimators share: the run's options as parameters, one run per fit."""

    def __init__(self, timeout: str | float | None = "60s", trials: int | None = None,
                 models: list[str] | None = None, folds: int | None = None, holdout: float = 0.2, seed: int = 0,
                 metric: str | None = None, ensemble: bool = True, explain: bool = False, devices: str = "auto",
                 runs: str | Path = "runs", report: bool = False, quiet: bool = True, class_weight: str = "none"):
        self.timeout = timeout
        self.trials = trials
        self.models = models
        self.folds = folds
        self.holdout = holdout
        self.seed = seed
        self.metric = metric
        self.ensemble = ensemble
        self.explain = explain
        self.devices = devices
        self.runs = runs
        self.report = report
        self.quiet = quiet
        self.class_weight = class_weight  # "balanced" for classes, as --class-weight; numbers take "none" only

    def _task(self, y: np.ndarray) -> str:
        raise NotImplementedError

    def fit(self, X, y) -> _Trialfuse:
        frame = as_features(X)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):  # refit on an array: no names now, as scikit-learn
            del self.feature_names_in_
        self.n_features_in_ = frame.shape[1]
        self._columns = list(frame.columns)
        y = np.asarray(y)
        check_consistent_length(frame, y)  # scikit-learn's words for it, not pandas'
        options: dict[str, Any] = {name: value for name, value in self.get_params().items()
                                   if name not in ("runs", "report", "quiet")}  # the rest are the run's options
        target = free_name(TARGET, frame.columns)  # never a feature's name
        out = new_run_dir(Path(self.runs))
        try:
            self.model_ = fit(frame.assign(**{target: y}), target, quiet=self.quiet, report=self.report,
                              out=out, task=self._task(y), **options)
        except BaseException:
            if out.is_dir() and not any(out.iterdir()):  # refused before it wrote anything: leave no empty folder
                out.rmdir()
            raise
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict(self._as_trained(X))

    def _as_trained(self, X) -> pd.DataFrame:
        frame = as_features(X)
        if not isinstance(X, pd.DataFrame) or not hasattr(self, "feature_names_in_"):  # by position, as sklearn
            if frame.shape[1] != len(self._columns):  # scikit-learn's words for it
                raise ValueError(f"X has {frame.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{len(self._columns)} features as input.")
            frame.columns = self._columns
        return frame


class TrialfuseRegressor(RegressorMixin, _Trialfuse):
    """A trialfuse run on numbers (searched by R² unless `metric`; `score` is R² on the given rows)."""

    def _task(self, y: np.ndarray) -> str:
        return "regression"


class TrialfuseClassifier(ClassifierMixin, _Trialfuse):
    """A trialfuse run on classes (searched by log-loss unless `metric`); `score` is accuracy."""

    def fit(self, X, y) -> TrialfuseClassifier:
        super().fit(X, y)
        self.classes_ = np.unique(np.asarray(y))  # scikit-learn's order, which its scorers index by
        self._columns_in_order = pd.Index(self.model_.task.classes).get_indexer(self.classes_)
        if (self._columns_in_order < 0).any():  # a label the run read as another value: say so, never mislabel
            raise RuntimeError(f"the run's classes {self.model_.task.classes} do not match y's {list(self.classes_)}")
        return self

    def predict_proba(self, X) -> np.ndarray:
        """[rows, classes] in the order of `classes_` (sorted labels, as scikit-learn sorts them)."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self._as_trained(X)).to_numpy()[:, self._columns_in_order]

    def _task(self, y: np.ndarray) -> str:
        return "binary" if len(pd.unique(y)) == 2 else "multiclass"
