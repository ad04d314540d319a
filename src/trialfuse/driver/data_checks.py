"""What a table's values say before anything trains: values no model can take (refused with
one line), and what would make the holdout's score read high (a warning): a feature that is
the target again, holdout rows that are copies of search rows.

A copy of a row in both the search rows and the holdout is a row the model was trained on,
scored as if new: 500 rows of pure noise, each five times, gave a holdout R² of 0.89.
"""
from __future__ import annotations

import numpy as np

from trialfuse.errors import UserError
from trialfuse.task import Task

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the NN and XGBoost read features as float32
TARGET_SCALE = (1e-100, 1e100)  # a target's range outside these: its squared errors under- or overflow
SAME_AS_TARGET = 0.9999  # |correlation| from which a feature is the target written again
FEW_LEVELS_PER_CLASS = 3  # a feature with at most this many values a class that names each row's class
FAR_OUT = 50  # robust z-score (distance from the median in MADs) of a target value far from the rest
FEW_FAR_OUT = 0.01  # that many of the rows at most: a few values that dominate every squared error


def check_ranges(X: np.ndarray, names: list[str], y: np.ndarray, task: Task, source: str) -> None:
    """Refuse features beyond float32's range (a model reads them as infinite) and a target whose
    range squares past float64's (every score would be noise or NaN)."""
    with np.errstate(invalid="ignore"):
        big = np.nanmax(np.abs(X), axis=0, initial=0.0) > FLOAT32_MAX if X.size else np.zeros(0, bool)
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
    """A warning per feature that is the target again on the search `rows`: one that follows a
    number exactly (|correlation| >= SAME_AS_TARGET), or names each row's class with few values."""
    said = []
    for j, name in enumerate(names):
        x, target = X[rows, j], y[rows]
        seen = ~np.isnan(x)
        x, target = x[seen], target[seen]
        if len(x) < 3 or np.all(x == x[0]):
            continue
        if task.is_classification:
            pairs = np.unique(np.column_stack([x, target]), axis=0)
            levels = len(np.unique(x))
            same = len(pairs) == levels and levels <= FEW_LEVELS_PER_CLASS * len(task.classes)
        else:
            same = abs(float(np.corrcoef(x, target)[0, 1])) >= SAME_AS_TARGET
        if same:
            how = "names every row's class" if task.is_classification else "follows it exactly"
            said.append(f"column {name!r} gives the target itself (on the search rows it {how}): a leak? A value "
                        "known only with the target makes every score read high")
    return said


def far_out_targets(y: np.ndarray, task: Task) -> list[str]:
    """A warning where a few target values (FEW_FAR_OUT of the rows at most) lie FAR_OUT from the
    rest: squared error and R² are then mostly theirs (5 values of 1e9 among 500 near 0 left a
    holdout R² of 0.001), where MAE reads the typical row."""
    if task.is_classification or task.metric_name == "mae":
        return []
    middle = float(np.median(y))
    spread = 1.4826 * float(np.median(np.abs(y - middle)))  # the MAD, scaled to a normal's sd
    far = np.abs(y - middle) > FAR_OUT * spread if spread > 0 else np.zeros(len(y), bool)
    if not far.any() or far.mean() > FEW_FAR_OUT:
        return []
    example = y[far][np.argmax(np.abs(y[far] - middle))]
    return [f"{int(far.sum())} target value(s) lie far from the rest (e.g. {example:.4g}, where half the rows lie "
            f"within {spread / 1.4826:.3g} of {middle:.4g}): they dominate squared error and R²; --metric mae ranks "
            "models by the typical row's error instead"]


def copies_in_holdout(X: np.ndarray, y: np.ndarray, rest: np.ndarray, sealed: np.ndarray) -> list[str]:
    """A warning where holdout rows are copies of search rows (every feature and the target equal)."""
    search = {_key(X[i], y[i]) for i in rest}
    copies = sum(_key(X[i], y[i]) in search for i in sealed)
    if not copies:
        return []
    return [f"{copies} of the holdout's {len(sealed)} rows are copies of search rows (same features and target): "
            "the model was trained on them, so its holdout score reads high; drop duplicate rows to measure it"]


def _key(row: np.ndarray, target: float) -> bytes:
    return np.nan_to_num(np.append(row, target), nan=np.inf).tobytes()  # a missing value equal to itself
