"""A model trained on the columns most related to the target (a screen), and the family module
that trains, serves and saves one wherever its params say `screen` (catalog.SCREEN).

Why: on a wide table every tree family's round costs in proportion to the columns (LightGBM on
1,750 x 2,000: 0.19 s a round, 32 s a fold), so under a short budget no trial finishes and the
run ended with no model. A run's last-chance trial (driver/last_chance.py) then trains on the
`screen` columns whose values go most with the target in the fold's own training rows: the
fold's validation rows play no part, so its score is honest. Sampling columns per tree instead
(LightGBM's feature_fraction 0.1) loses what a few informative columns carry (fold R² 0.86 ->
0.45 on 2,000 columns, ten of them informative; bench/results/HISTORY.md, "Wide tables").

A column's strength is the share of the target's variance it explains, less what chance gives:
a number column's r² (scikit-learn's `r_regression`; blanks filled by the column's mean for
the statistic only), a category column's level means' with each row told by its level's other
rows (a blank a level of its own; its codes, read as numbers, are in an order that means
nothing, and in sample an id's means explain everything). For classes: a number's variance
explained by the classes (the ANOVA's), a category's share of the classes' Gini impurity.

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

from trialfuse.catalog import OBJECTIVE, SCREEN, screens
from trialfuse.task import NUMBERS, Task

CHUNK_CELLS = 2**23  # cells scored at a time: the statistic's copies of 10,000 x 8,000 rows at once were 2.5 GB
SCAN = 10  # candidates looked at, strongest first, per column kept
REPEATED = 0.95  # |r| with a column already kept past which a column adds next to nothing
REPEAT_ROWS = 10_000  # rows that tell whether two columns repeat each other


@dataclass
class Screened:
    """A model of the family's library and the columns of the table it reads, in order."""

    model: Any
    columns: np.ndarray  # int: indices into the table's columns
    width: int  # the table's columns: its contributions are given back at that width


def screened_columns(X: np.ndarray, y: np.ndarray, most: int, task: Task = NUMBERS,
                     categorical: Sequence[int] = ()) -> np.ndarray:
    """The `most` columns of X whose values go most with y (ties: the first), in table order,
    passing over a column that nearly repeats one already kept (`_not_repeating`); a constant or
    all-blank column scores nothing. A column's strength is the share of the target's variation
    it explains out of sample, from 0 to 1 for every kind of column: `_numbers_explain`,
    `_levels_explain`."""
    strength = np.full(X.shape[1], -1.0)
    categorical = np.asarray(sorted(set(categorical)), dtype=np.int64)
    numbers = np.setdiff1d(np.arange(X.shape[1]), categorical)
    step = max(1, CHUNK_CELLS // max(1, len(X)))
    for start in range(0, len(numbers), step):
        columns = numbers[start:start + step]
        filled = _filled(X[:, columns])
        spread = np.ptp(filled, axis=0) > 0
        strength[columns] = np.where(spread, _numbers_explain(filled, y, task), -1.0)
    for column in categorical:
        levels = np.unique(np.nan_to_num(X[:, column], nan=-1.0), return_inverse=True)[1]
        if levels.max(initial=0) > 0:  # one level: nothing to tell
            strength[column] = _levels_explain(levels, y, task)
    ranked = np.argsort(-strength, kind="stable")
    kept = _not_repeating(X, ranked[:SCAN * most], most)
    taken = set(kept.tolist())
    rest = [c for c in ranked if c not in taken][:most - len(kept)]  # too few unlike ones: the next strongest
    return np.sort(np.concatenate([kept, np.asarray(rest, dtype=np.int64)]).astype(np.int64))


def _numbers_explain(filled: np.ndarray, y: np.ndarray, task: Task) -> np.ndarray:
    """Each number column's share of variance explained, less what chance gives as many
    parameters (the adjusted R²): a number target's by its one slope (r², scikit-learn's
    `r_regression`), or its own by the classes' means (eta², from `f_classif`'s F: so numbers
    rank as the ANOVA F ranks them)."""
    from sklearn.feature_selection import f_classif, r_regression

    rows = len(filled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant column's r or F
        if not task.is_classification:
            return _adjusted(np.nan_to_num(r_regression(filled, y)) ** 2, rows, 2)
        classes = len(np.unique(y))
        f = np.nan_to_num(f_classif(filled, np.asarray(y, dtype=np.int64))[0])
        between = f * (classes - 1)
        return _adjusted(between / (between + max(1, rows - classes)), rows, classes)


def _levels_explain(levels: np.ndarray, y: np.ndarray, task: Task) -> float:
    """A category column's share of the target's variation explained by its levels, each row told
    by its level's other rows (a level of one row: by every row), so out of sample: in sample an id,
    a level a row or two, explains everything. A number target's variance; classes' Gini impurity
    (the variance of one 0/1 column per class: Goodman and Kruskal's tau, left out one at a time)."""
    counts = np.bincount(levels).astype(np.float64)
    if not task.is_classification:
        y = np.asarray(y, dtype=np.float64)
        total = float(np.sum((y - y.mean()) ** 2))
        off_own = y - (np.bincount(levels, weights=y) / counts)[levels]  # n / (n - 1) of it: off the others' mean
        residual = np.where(counts[levels] > 1, off_own * (counts / np.maximum(counts - 1, 1))[levels], y - y.mean())
        wrong = float(np.sum(residual ** 2))
    else:
        k = len(task.classes)
        table = np.bincount(levels * k + np.asarray(y, dtype=np.int64), minlength=len(counts) * k).reshape(-1, k)
        share = table.sum(axis=0) / len(levels)
        total = len(levels) * float(np.sum(share * (1.0 - share)))
        n, c = counts[:, None], table.astype(np.float64)
        told = np.maximum(n - 1, 1)  # a row of class j in a level of n rows, c_j of class j: told (c_j - 1) / (n - 1)
        several = c * (1.0 - (c - 1) / told) ** 2 + (n - c) * (c / told) ** 2
        alone = c * (1.0 - 2.0 * share + np.sum(share ** 2))  # a level of one row (c its class): told `share`
        wrong = float(np.sum(np.where(n > 1, several, alone)))
    return 1.0 - wrong / total if total > 0 else 0.0


def _adjusted(explained: np.ndarray, rows: int, parameters: int) -> np.ndarray:
    """A share of variance explained in sample less what chance gives a fit of as many parameters
    (the adjusted R²), as the share a fit explains out of sample is on average."""
    return 1.0 - (1.0 - explained) * (rows - 1) / max(1, rows - parameters)


def _not_repeating(X: np.ndarray, candidates: np.ndarray, most: int) -> np.ndarray:
    """Up to `most` of the candidates (strongest first), each kept unless its |r| with one already
    kept passes REPEATED, on at most REPEAT_ROWS evenly spaced rows: 150 near-copies of one column
    filled a screen of 100, and the nine other informative columns were left out (holdout R² 0.37)."""
    rows = np.linspace(0, len(X) - 1, min(len(X), REPEAT_ROWS)).astype(np.int64)
    Z = _filled(X[np.ix_(rows, candidates)])
    with np.errstate(all="ignore"):
        Z = np.nan_to_num((Z - Z.mean(axis=0)) / np.where((sd := Z.std(axis=0)) > 0, sd, 1.0) / np.sqrt(len(rows)))
    kept: list[int] = []
    nearest = np.zeros(len(candidates))  # each candidate's largest |r| with a column kept so far
    for i in range(len(candidates)):
        if len(kept) == most:
            break
        if nearest[i] <= REPEATED:
            kept.append(i)
            nearest = np.maximum(nearest, np.abs(Z.T @ Z[:, i]))
    return candidates[kept]


def _filled(part: np.ndarray) -> np.ndarray:
    """Blanks as their column's mean (an all-blank column: 0), for the statistics only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-blank column's mean
        return np.nan_to_num(np.where(np.isnan(part), np.nanmean(part, axis=0), part), nan=0.0)


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
        screened, most = screens(params, X_train.shape[1]), params.get(SCREEN)
        task = task.trained_by(params)  # the objective its params chose, where they chose one
        params = {k: v for k, v in params.items() if k not in (SCREEN, OBJECTIVE)}  # no family knows these keys
        if not screened:
            return self.module.fit(params, X_train, y_train, X_val, y_val, task=task, categorical=categorical,
                                   **options)
        columns = screened_columns(X_train, y_train, int(most), task, categorical)
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

    def columns_read(self, model) -> np.ndarray | None:
        """The table's columns a model's predictions can move with: a screened model's, narrowed to
        those its splits read where the family tells them (`columns_used`); None: any column."""
        inner = model.model if isinstance(model, Screened) else model
        used = self.module.columns_used(inner) if hasattr(self.module, "columns_used") else None
        if isinstance(model, Screened):
            return model.columns if used is None else model.columns[used]
        return used

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
