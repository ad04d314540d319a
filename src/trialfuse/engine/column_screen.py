"""A model trained on the columns most related to the target (a screen), and the family module
that trains, serves and saves one wherever its params say `screen`.

Why: on a wide table every tree family's round costs in proportion to the columns (LightGBM on
1,750 x 2,000: 0.19 s a round, 32 s a fold), so under a short budget no trial finishes and the
run ends with no model. A run's last-chance trial (driver/scheduler.py) then trains on the
`screen` columns whose values go most with the target in the fold's own training rows: the
fold's validation rows play no part, so its score is honest. Sampling columns per tree instead
(LightGBM's feature_fraction 0.1) loses what a few informative columns carry (fold R² 0.86 ->
0.45 on 2,000 columns, ten of them informative; HISTORY.md, "Wide tables").

The statistic is scikit-learn's: |Pearson r| for a number target (`r_regression`), the ANOVA F
for classes (`f_classif`), on the columns with blanks filled by their mean; a category column's
codes are read as numbers there (the trees still split on them as categories).

A screened model is saved whole with joblib (its library's model pickled, which all of theirs
support) under a name ending in SUFFIX, so a kept fold model copied to best_model/ stays one file.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import numpy as np

from trialfuse.catalog import SCREEN
from trialfuse.task import NUMBERS, Task

SUFFIX = ".screened"


@dataclass
class Screened:
    """A model of the family's library and the columns of the table it reads, in order."""

    model: Any
    columns: np.ndarray  # int: indices into the table's columns
    width: int  # the table's columns: its contributions are given back at that width


def screened_columns(X: np.ndarray, y: np.ndarray, most: int, task: Task = NUMBERS) -> np.ndarray:
    """The `most` columns of X whose values go most with y (ties: the first), in table order."""
    from sklearn.feature_selection import f_classif, r_regression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-blank or constant column: no score
        filled = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
        filled = np.nan_to_num(filled, nan=0.0)
        if task.is_classification:
            strength = f_classif(filled, y.astype(np.int64))[0]
        else:
            strength = np.abs(r_regression(filled, y))
    strength = np.where(np.ptp(filled, axis=0) > 0, np.nan_to_num(strength, nan=-1.0), -1.0)  # constant: none
    best = np.argsort(-strength, kind="stable")[:most]
    return np.sort(best)


class Screening:
    """A family's module (fit / predict / save / load, contributions where it has them, and the
    rest as it is) that also trains and serves screened models: params with SCREEN train on that
    many columns (where the table has more); every other model passes through untouched."""

    def __init__(self, module: ModuleType):
        self.module = module

    def __getattr__(self, name: str):
        if name == "contributions":
            inner = self.module.contributions  # AttributeError where the family has none
            return lambda model, X: self._contributions(inner, model, X)
        return getattr(self.module, name)

    def fit(self, params: dict[str, Any], X_train: np.ndarray, y_train: np.ndarray, X_val=None, y_val=None, *,
            task: Task = NUMBERS, categorical: Sequence[int] = (), **options):
        from trialfuse.engine.families import Fitted

        most = params.get(SCREEN)
        params = {k: v for k, v in params.items() if k != SCREEN}
        if not most or X_train.shape[1] <= most:
            return self.module.fit(params, X_train, y_train, X_val, y_val, task=task, categorical=categorical,
                                   **options)
        columns = screened_columns(X_train, y_train, int(most), task)
        place = {int(c): i for i, c in enumerate(columns)}
        fitted = self.module.fit(params, X_train[:, columns], y_train, None if X_val is None else X_val[:, columns],
                                 y_val, task=task, categorical=[place[c] for c in categorical if c in place],
                                 **options)
        return Fitted(Screened(fitted.model, columns, X_train.shape[1]), fitted.best_rounds, fitted.rounds_run)

    def predict(self, model, X: np.ndarray) -> np.ndarray:
        if isinstance(model, Screened):
            return self.module.predict(model.model, np.asarray(X)[:, model.columns])
        return self.module.predict(model, X)

    def save(self, model, directory) -> str:
        if isinstance(model, Screened):
            name = f"model{SUFFIX}"
            joblib.dump(model, Path(directory) / name)
            return name
        return self.module.save(model, directory)

    def load(self, path):
        return joblib.load(path) if Path(path).suffix == SUFFIX else self.module.load(path)

    @staticmethod
    def _contributions(inner, model, X: np.ndarray) -> np.ndarray:
        """A screened model's at the table's width: 0 for every column it does not read."""
        if not isinstance(model, Screened):
            return inner(model, X)
        part = inner(model.model, np.asarray(X)[:, model.columns])
        whole = np.zeros((*part.shape[:-1], model.width))
        whole[..., model.columns] = part
        return whole
