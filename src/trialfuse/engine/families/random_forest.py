"""scikit-learn's random forest: bootstrapped rows, the best split among a share of the features.
Trained, served and saved as every forest is (forests.py)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from trialfuse.engine.families import Fitted, forests
from trialfuse.engine.families.sklearn_saved import load, predict, save  # noqa: F401  (its interface)
from trialfuse.task import NUMBERS, Task


def fit(params: dict[str, Any], X_train, y_train, X_val=None, y_val=None, *, device: str = "cpu",
        threads: int | None = None, seed: int = 0, rounds: int | None = None, deadline: float | None = None,
        task: Task = NUMBERS, categorical: Sequence[int] = ()) -> Fitted:
    """CPU only; no early stopping (the validation rows are scored by the caller)."""
    return forests.fit((RandomForestRegressor, RandomForestClassifier), params, X_train, y_train, threads=threads,
                       seed=seed, rounds=rounds, deadline=deadline, task=task)
