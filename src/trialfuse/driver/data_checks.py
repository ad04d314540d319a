"""What a table's values say before anything trains: values no model can take (refused with
one line), what would make the holdout's score read high (a warning): a feature that is
the target again, holdout rows that are copies of search rows; and numbers the NN reads other
than as written (codes for "unknown", typos far out; `far_values`).

A copy of a row in both the search rows and the holdout is a row the model was trained on,
scored as if new: 500 rows of pure noise, each five times, gave a holdout R² of 0.89.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trialfuse import far_values
from trialfuse.errors import UserError
from trialfuse.task import Objective, Task

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the NN and XGBoost read features as float32
TARGET_SCALE = (1e-100, 1e100)  # a target's range outside these: its squared errors under- or overflow
SAME_AS_TARGET = 0.9999  # |correlation| from which a feature is the target written again
FEW_LEVELS_PER_CLASS = 3  # a feature with at most this many values a class that names each row's class
ROWS_PER_LEVEL = 5  # and this many rows a value on average (on few rows any column names the classes)
PRESENT_SHARE = 0.5  # of the rows a feature must be present on to be judged (4 values on 500 rows prove nothing)
MANY_VALUES = 0.5  # a feature with distinct values for this share of the distinct rows: a copy is no type
VALUES_SAMPLE = 10_000  # search rows that share is read on
FAR_OUT = 50  # robust z-score (distance from the median in MADs) of a target value far from the rest
FEW_FAR_OUT = 0.01  # that many of the rows at most: a few values that dominate every squared error
SAID_COLUMNS = 3  # far-value warnings said one by one at most


def check_ranges(X: np.ndarray, names: list[str], y: np.ndarray, task: Task, source: str) -> None:
    """Refuse features beyond float32's range (a model reads them as infinite) and a target whose
    range squares past float64's (every score would be noise or NaN)."""
    with np.errstate(invalid="ignore"):  # no np.abs(X): a wide table's copy
        big = (np.nanmax(X, axis=0, initial=0.0) > FLOAT32_MAX) | (np.nanmin(X, axis=0, initial=0.0) < -FLOAT32_MAX) \
            if X.size else np.zeros(0, bool)
    if big.any():
        name = names[int(np.argmax(big))]
        raise UserError(f"column {name!r} of {source} holds values beyond {FLOAT32_MAX:.1e}, past what the models "
                        "read (float32): rescale it (a log, or other units)")
    if not task.is_classification:
        spread = float(np.max(y) - np.min(y))
        if not TARGET_SCALE[0] <= spread <= TARGET_SCALE[1]:
            raise UserError(f"the target's range ({spread:.1e}) is too {'small' if spread < 1 else 'large'} for its "
                            "squared errors to be scored: rescale it (other units)")


def target_again(X: np.ndarray, names: list[str], y: np.ndarray, task: Task, rows: np.ndarray) -> list[str]:
    """A warning per feature that is the target again on the search `rows`, where it is present
    on most of them (PRESENT_SHARE): one that follows a number exactly (|correlation| >=
    SAME_AS_TARGET), or names each row's class with few values (at most FEW_LEVELS_PER_CLASS a
    class, ROWS_PER_LEVEL rows each on average: a value a row names nothing)."""
    said = []
    for j, name in enumerate(names):
        x, target = X[rows, j], y[rows]
        seen = ~np.isnan(x)
        if seen.mean() < PRESENT_SHARE:
            continue
        x, target = x[seen], target[seen]
        if task.is_classification:
            levels = np.unique(x)
            if not 2 <= len(levels) <= FEW_LEVELS_PER_CLASS * len(task.classes) \
                    or len(x) < ROWS_PER_LEVEL * len(levels):
                continue
            same = len(np.unique(np.column_stack([x, target]), axis=0)) == len(levels)
        else:
            if np.std(x) == 0 or np.std(target) == 0:
                continue
            same = abs(float(np.corrcoef(x, target)[0, 1])) >= SAME_AS_TARGET
        if same:
            how = "names every row's class" if task.is_classification else "follows it exactly"
            said.append(f"column {name!r} gives the target itself (on the search rows it {how}): a leak? A value "
                        "known only with the target makes every score read high")
    return said


def far_out_targets(y: np.ndarray, task: Task) -> list[str]:
    """A warning where a few target values (FEW_FAR_OUT of the rows at most) lie FAR_OUT from the
    rest: squared error and R² are then mostly theirs (5 values of 1e9 among 500 near 0 left a
    holdout R² of 0.001), and --metric mae trains models on absolute error too (Task.objectives)
    and ranks them by it, which they barely move. Said under it too, as R² and RMSE are still
    theirs. A target of no negative value (a price, a count) is judged on its log, where a long
    tail is ordinary."""
    if task.is_classification:
        return []
    judged = np.log1p(y - y.min()) if y.min() >= 0 else y
    middle = float(np.median(judged))
    spread = 1.4826 * float(np.median(np.abs(judged - middle)))  # the MAD, scaled to a normal's sd
    far = np.abs(judged - middle) > FAR_OUT * spread if spread > 0 else np.zeros(len(y), bool)
    if not far.any() or far.mean() > FEW_FAR_OUT:
        return []
    example = y[far][np.argmax(np.abs(judged[far] - middle))]
    said = (f"{int(far.sum())} of the search rows' target values lie far from the rest (e.g. {example:.4g}, where "
            f"half the rows lie between {np.quantile(y, 0.25):.4g} and {np.quantile(y, 0.75):.4g}): ")
    if task.objective == Objective.ABSOLUTE_ERROR:
        return [said + "R² and RMSE are mostly theirs (the search trains models on absolute error too, which they "
                "barely move, and ranks them by it); check them (a unit or entry error?)"]
    trained = "squared error or the Poisson deviance" if task.counts else "squared error"
    return [said + f"every model trains on {trained}, which they pull hard, as they do R²; check them (a unit or "
            "entry error?) and drop them if so, or train and rank the models by absolute error too (--metric mae), "
            "which they barely move"]


def far_features(X: np.ndarray, names: list[str], categorical: list[int]) -> list[str]:
    """A warning per number column (SAID_COLUMNS at most, then a count) with a code for "unknown"
    or values so far out they read as typos (`far_values`): the NN reads each code as an input of
    its own and the far values as missing, where the trees read both as written."""
    said = []
    for j, far in far_values.of_columns(X, [j for j in range(X.shape[1]) if j not in categorical]).items():
        column = X[:, j]
        if far.codes:
            rows = int(np.isin(column, far.codes).sum())
            said.append(f"column {names[j]!r}: {', '.join(f'{c:.10g}' for c in far.codes)} (on {rows} rows, "
                        f"{rows / len(column):.1%}) {'lies' if len(far.codes) == 1 else 'lie'} far beyond its other "
                        "values, as a code for \"unknown\" would: the NN reads it as a category of its own, the "
                        "trees as written (a blank cell says missing plainly)")
        stray = column[((column < far.low) | (column > far.high)) & ~np.isin(column, far.codes)]
        if len(stray):
            rest = column[~np.isin(column, [*far.codes, *stray])]
            said.append(f"column {names[j]!r}: far beyond the others, {len(stray)} value(s) (e.g. "
                        f"{stray[np.argmax(np.abs(stray))]:.10g}; 98% lie between {np.nanquantile(rest, 0.01):.4g} and "
                        f"{np.nanquantile(rest, 0.99):.4g}): typos? The NN reads them as missing")
    more = len(said) - SAID_COLUMNS
    return said[:SAID_COLUMNS] + ([f"... and {more} more such warning(s) of far values"] if more > 0 else [])


def copies_in_holdout(X: np.ndarray, y: np.ndarray, rest: np.ndarray, sealed: np.ndarray) -> list[str]:
    """A warning where holdout rows are copies of search rows (every feature and the target equal),
    in a table where that is no accident: one with a feature of many values (as many as MANY_VALUES
    of the distinct rows, on a sample); where every feature has a few values, rows repeat by nature."""
    keys = row_keys(np.column_stack([X, y]))
    copies = int(np.isin(keys[sealed], keys[rest]).sum())
    sample = rest[:VALUES_SAMPLE]
    distinct_rows = len(np.unique(keys[sample]))
    if not copies or not any(len(np.unique(column)) >= MANY_VALUES * distinct_rows for column in X[sample].T):
        return []
    return [f"{copies} of the holdout's {len(sealed)} rows are copies of search rows (same features and target): "
            "the model was trained on them, so its holdout score reads high; drop duplicate rows to measure it"]


def row_keys(X: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row of X, equal for rows equal in every column (a missing value equal to
    itself): which rows of one table copy rows of another."""
    return pd.util.hash_pandas_object(pd.DataFrame(X), index=False).to_numpy()
