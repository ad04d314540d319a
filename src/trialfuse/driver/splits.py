"""The evaluation protocol's row splits: a sealed holdout and K folds over the rest.

Both are seeded so that the same data and seed give the same splits on every machine.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from trialfuse.driver.target import counts_hint
from trialfuse.errors import UserError
from trialfuse.task import Task

MIN_VALIDATION_ROWS = 2  # R² needs at least two rows to have a variance
FEW_HOLDOUT_ROWS = 30  # a holdout score on fewer rows gets a warning: one row moves it far


def check_split_sizes(rows: int, holdout: float, folds: int) -> None:
    """Refuse a table too small for a holdout and K validation folds that can be scored
    (the option values themselves are checked earlier, in compare.check_options)."""
    if not _sizes_ok(rows, holdout, folds):
        need = next(n for n in range(rows + 1, 10**9) if _sizes_ok(n, holdout, folds))
        fewer = next((k for k in range(folds - 1, 1, -1) if _sizes_ok(rows, holdout, k)), None)
        hint = f" (or --folds {fewer})" if fewer else ""
        raise UserError(f"too few rows ({rows}) for a {holdout:g} holdout plus {folds} folds: need at least {need}"
                        f"{hint}")


def _sizes_ok(rows: int, holdout: float, folds: int) -> bool:
    n_holdout = _holdout_rows(rows, holdout)
    smallest_fold = (rows - n_holdout) // folds
    return n_holdout >= MIN_VALIDATION_ROWS and smallest_fold >= MIN_VALIDATION_ROWS


def _holdout_rows(rows: int, holdout: float) -> int:
    return int(np.ceil(rows * holdout))  # the rule train_test_split applies to a float test_size


def holdout_split(rows: int, holdout: float, seed: int,
                  strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (search rows, holdout rows) as row indices into the table; with `strata`
    (each row's class, see Task.strata) every class keeps its share on both sides."""
    rest, sealed = train_test_split(np.arange(rows), test_size=holdout, random_state=seed, shuffle=True,
                                    stratify=strata)
    return np.sort(rest), np.sort(sealed)


def kfold_indices(rows: int, folds: int, seed: int,
                  strata: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold (train, validation) positions into the search rows, stratified by `strata`."""
    splitter = (KFold if strata is None else StratifiedKFold)(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, val) for train, val in splitter.split(np.zeros(rows), strata)]


def check_class_sizes(task: Task, y: np.ndarray, holdout: float, folds: int, seed: int) -> None:
    """Every stratum (a class) needs rows in the holdout and in each of the K validation folds:
    one clear line naming the smallest class, before anything trains."""
    if task.strata(y) is None:  # nothing is stratified (numbers)
        return
    counts = task.class_counts(y)
    smallest = int(np.argmin(counts))
    need = folds + max(1, math.ceil(holdout * counts[smallest]))
    if not classes_fill(task, y, holdout, folds, seed):
        raise UserError(f"class {task.classes[smallest]!r} has {counts[smallest]} row(s): too few for a "
                        f"{holdout:g} holdout plus {folds} folds (each class needs about {need}){counts_hint(task)}")


def classes_fill(task: Task, y: np.ndarray, holdout: float, folds: int, seed: int) -> bool:
    """Whether every class has rows in the holdout and in each of the K validation folds (a class
    with none in the holdout leaves its score undefined: ROC-AUC was NaN)."""
    strata = task.strata(y)
    if strata is None:
        return True
    if task.class_counts(strata).min() < 2:  # a class of one row cannot be split at all
        return False
    sealed_rows = _holdout_rows(len(y), holdout)  # train_test_split refuses a side with fewer rows than classes:
    if min(sealed_rows, len(y) - sealed_rows) < len(task.classes):  # tested, not caught (its ValueError would
        return False  # read any other, a seed of 1.5, as "too few")
    rest, sealed = holdout_split(len(y), holdout, seed, strata)
    return bool(task.class_counts(strata[rest]).min() >= folds and task.class_counts(strata[sealed]).min() >= 1)
