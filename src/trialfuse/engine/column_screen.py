"""A model trained on the columns most related to the target (a screen), and the family module
that trains, serves and saves one wherever its params say `screen` (catalog.SCREEN).

Why: on a wide table every tree family's round costs in proportion to the columns (LightGBM on
1,750 x 2,000: 0.19 s a round, 32 s a fold), so under a short budget no trial finishes and the
run ended with no model. A run's last-chance trial (driver/last_chance.py) then trains on the
`screen` columns whose values go most with the target in the fold's own training rows: the
fold's validation rows play no part, so its score is honest. Sampling columns per tree instead
(LightGBM's feature_fraction 0.1) loses what a few informative columns carry (fold R² 0.86 ->
0.45 on 2,000 columns, ten of them informative; bench/results/HISTORY.md, "Wide tables").

The statistic is scikit-learn's: |Pearson r| for a number target (`r_regression`), the ANOVA F
for classes (`f_classif`), on the columns with blanks filled by their mean; a category column's
codes are read as numbers there (the trees still split on them as categories).

A screened model is saved as its library saves it, read by its library alone, with the columns
it reads beside it (`columns_file`: `<name>-columns.json`, X[:, columns]).
"""
from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from trialfuse.catalog import SCREEN
from trialfuse.task import NUMBERS, Task

CHUNK_COLUMNS = 1024  # scored at a time: the statistic's copies of 10,000 x 8,000 rows at once were 2.5 GB


@dataclass
class Screened:
    """A model of the family's library and the columns of the table it reads, in order."""

    model: Any
    columns: np.ndarray  # int: indices into the table's columns
    width: int  # the table's columns: its contributions are given back at that width


def screened_columns(X: np.ndarray, y: np.ndarray, most: int, task: Task = NUMBERS) -> np.ndarray:
    """The `most` columns of X whose values go most with y (ties: the first), in table order; a
    constant or all-blank column scores nothing."""
    from sklearn.feature_selection import f_classif, r_regression

    strength = np.full(X.shape[1], -1.0)
    for start in range(0, X.shape[1], CHUNK_COLUMNS):
        part = X[:, start:start + CHUNK_COLUMNS]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-blank and constant columns (f_classif names every one)
            filled = np.nan_to_num(np.where(np.isnan(part), np.nanmean(part, axis=0), part), nan=0.0)
            score = f_classif(filled, y.astype(np.int64))[0] if task.is_classification else \
                np.abs(r_regression(filled, y))
        spread = np.ptp(filled, axis=0) > 0
        strength[start:start + part.shape[1]] = np.where(spread, np.nan_to_num(score, nan=-1.0), -1.0)
    return np.sort(np.argsort(-strength, kind="stable")[:most])


def columns_file(path: str | Path) -> Path:
    """Where the columns a screened model file reads are written: `<name>-columns.json` beside it
    (not `model.*`: a kept fold's directory holds one file by that name)."""
    path = Path(path)
    return path.with_name(f"{path.stem}-columns.json")


class Screening:
    """A family's module (fit / predict / save / load / publish, contributions where it has them,
    and the rest as it is) that also trains and serves screened models: params with SCREEN train
    on that many columns (where the table has more); every other model passes through untouched."""

    def __init__(self, module: ModuleType):
        self.module = module

    def __getattr__(self, name: str):
        module = self.__dict__.get("module")
        if module is None or name.startswith("__"):  # copy and pickle ask before __init__ ran
            raise AttributeError(name)
        if name == "contributions":
            inner = module.contributions  # AttributeError where the family has none
            return lambda model, X: _contributions(inner, model, X)
        return getattr(module, name)

    def fit(self, params: dict[str, Any], X_train: np.ndarray, y_train: np.ndarray, X_val=None, y_val=None, *,
            task: Task = NUMBERS, categorical: Sequence[int] = (), **options):
        """The family's fit, on the screened columns of X_train where params say so (a `--refit` on
        every search row screens those rows: its columns may differ from each fold's)."""
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
        return replace(fitted, model=Screened(fitted.model, columns, X_train.shape[1]))

    def predict(self, model, X: np.ndarray) -> np.ndarray:
        if isinstance(model, Screened):
            return self.module.predict(model.model, np.asarray(X)[:, model.columns])
        return self.module.predict(model, X)

    def save(self, model, directory) -> str:
        if not isinstance(model, Screened):
            return self.module.save(model, directory)
        name = self.module.save(model.model, directory)
        columns_file(Path(directory) / name).write_text(json.dumps({"columns": model.columns.tolist(),
                                                                    "width": model.width}))
        return name

    def load(self, path):
        model = self.module.load(path)
        if not columns_file(path).is_file():
            return model
        read = json.loads(columns_file(path).read_text())
        return Screened(model, np.asarray(read["columns"], dtype=np.int64), int(read["width"]))

    def publish(self, source, directory, stem: str) -> str:
        """A kept fold model as served from best_model/: `<stem>.<its suffix>`, its columns beside
        it where it is screened (the NN exports its own: mlp.publish)."""
        if hasattr(self.module, "publish"):
            return self.module.publish(source, directory, stem)
        name = f"{stem}{Path(source).suffix}"
        shutil.copyfile(source, Path(directory) / name)
        if columns_file(source).is_file():
            shutil.copyfile(columns_file(source), columns_file(Path(directory) / name))
        return name


def _contributions(inner, model, X: np.ndarray) -> np.ndarray:
    """A screened model's at the table's width: 0 for every column it does not read."""
    if not isinstance(model, Screened):
        return inner(model, X)
    part = inner(model.model, np.asarray(X)[:, model.columns])
    whole = np.zeros((*part.shape[:-1], model.width))
    whole[..., model.columns] = part
    return whole
