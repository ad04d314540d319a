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
- the checks' dozens of fits each cost a run (seconds at least) and a run directory;
- check_estimators_nan_inf (which check_estimator runs only where the tags deny NaN): NaN
  and infinite numbers in X are missing values to a run, by design (the tags say allow_nan).
What does apply is tested: `clone` and `get_params` round-trip, `cross_val_score`, a
`Pipeline` after a `ColumnTransformer`, `GridSearchCV` over a parameter, `score`, and the
checks of what fit takes and refuses (empty data, NaN in y, complex data, a 1-D X, y=None,
a column-vector y, {label: weight} class weights, a regression target given to the
classifier; tests/e2e/test_estimator_input.py). Bad input raises `UserError`, a ValueError,
worded for an estimator: y and its parameters, not a target column and flags.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from trialfuse.driver import run_dir
from trialfuse.driver.run_dir import new_run_dir
from trialfuse.errors import UserError
from trialfuse.model import ARRAY_TARGET, OPTIONS, as_features, fit, free_name

TARGET = ARRAY_TARGET  # "y": what the refusals name, as the user named it
ESTIMATOR_OF = {"--task regression": "TrialfuseRegressor", "--task multiclass": "TrialfuseClassifier",
                "--task binary": "TrialfuseClassifier"}  # the CLI's hints, as an estimator's user takes them
BEFORE_TRAINING = (run_dir.JOURNAL, run_dir.DATA, run_dir.HOLDOUT)  # what a run writes before it trains (and
# the journal's lock files beside it: study.journal.lock, .study.journal.driver)


class _Trialfuse(BaseEstimator):
    """What both estimators share: the run's options as parameters, one run per fit."""

    def __init__(self, timeout: str | float | None = "60s", trials: int | None = None,
                 models: list[str] | None = None, folds: int | None = None, holdout: float = 0.2, seed: int = 0,
                 metric: str | None = None, ensemble: bool = True, explain: bool = False, devices: str | int = "auto",
                 runs: str | Path = "runs", report: bool = False, quiet: bool = True,
                 class_weight: str | dict = "none"):
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
        self.class_weight = class_weight  # "balanced" or {label: weight} for classes; numbers take "none" only

    def _task(self, y: np.ndarray) -> str:
        raise NotImplementedError

    def fit(self, X, y) -> _Trialfuse:
        if y is None:  # scikit-learn's words for it (check_requires_y_none)
            raise UserError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        frame = as_features(X)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):  # refit on an array: no names now, as scikit-learn
            del self.feature_names_in_
        self.n_features_in_ = frame.shape[1]
        self._columns = list(frame.columns)
        y = self._check_y(y)
        check_consistent_length(frame, y)  # scikit-learn's words for it, not pandas'
        options: dict[str, Any] = {name: value for name, value in self.get_params().items()
                                   if name not in ("runs", "report", "quiet")}  # the rest are the run's options
        target = free_name(TARGET, frame.columns)  # never a feature's name
        out = new_run_dir(Path(self.runs))
        try:
            self.model_ = fit(frame.assign(**{target: y}), target, quiet=self.quiet, report=self.report,
                              out=out, task=self._task(y), **options)
        except UserError as exc:
            _discard_unstarted(out)
            raise UserError(self._own_words(str(exc), target)) from None
        except BaseException:
            _discard_unstarted(out)
            raise
        return self

    def _check_y(self, y) -> np.ndarray:
        """y as one value per row: a column vector [n, 1] raveled with scikit-learn's
        DataConversionWarning, as its estimators take it; anything else 2-D refused."""
        try:
            y = column_or_1d(y, warn=True)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if np.iscomplexobj(y):
            raise UserError("Complex data not supported: y holds complex numbers")
        return y

    def _own_words(self, line: str, target: str) -> str:
        """A run's refusal in this estimator's terms: the CLI names a target column and flags
        (`target column 'y' has 3 missing ...`, `--task regression`), where the user gave y and
        parameters."""
        line = line.replace(f"target column {target!r}", "y")
        for flag, name in ESTIMATOR_OF.items():
            line = line.replace(flag, name)
        flags = "|".join(name.replace("_", "-") for name in OPTIONS)  # "--folds 2" -> "folds=2", "--class-weight"
        return re.sub(rf"--({flags})\b(?: (\d+)\b)?",
                      lambda m: m[1].replace("-", "_") + (f"={m[2]}" if m[2] else ""), line)

    def __sklearn_tags__(self):
        """As the run reads X: NaN (and infinite numbers) are missing values, a sparse matrix is
        made dense; with a time budget, how many trials fit depends on the machine's speed."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        tags.non_deterministic = self.timeout is not None
        return tags

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
    """A trialfuse run on classes (searched by log-loss unless `metric`); `score` is accuracy.
    `class_weight`: "none", "balanced" or scikit-learn's {label: weight} (a label left out weighs 1)."""

    def _check_y(self, y) -> np.ndarray:
        """Labels of one kind, refused before anything trains: text beside numbers (1, "dog"),
        which scikit-learn cannot sort into `classes_`; numbers that are no classes (2.37, 0.51)."""
        y = super()._check_y(y)
        missing = pd.isna(pd.Series(y, dtype=object)).to_numpy()  # first: None and pd.NA break the typing below
        if missing.any():
            raise UserError(f"y has {int(missing.sum())} missing or infinite value(s) (first at row "
                            f"{int(np.argmax(missing))})")
        labels = pd.unique(pd.Series(y, dtype=object))
        text = [isinstance(v, str) for v in labels]
        if any(text) and not all(text):
            number, word = labels[text.index(False)], labels[text.index(True)]
            raise UserError(f"Mix of label input types (string and number) in y, e.g. {number!r} and {word!r}: "
                            "make the labels all text or all numbers")
        try:
            check_classification_targets(y)
        except ValueError as exc:  # scikit-learn's words: "Unknown label type: continuous. Maybe ..."
            raise UserError(str(exc).splitlines()[0]) from None
        return y

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


def _discard_unstarted(out: Path) -> None:
    """Remove a refused or failed fit's run directory where it holds nothing a trial made (at
    most the journal and the kept table and holdout of a run stopped before training): each
    fit has its own directory, which no later fit resumes."""
    if out.is_dir() and all(any(name in path.name for name in BEFORE_TRAINING) for path in out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)
