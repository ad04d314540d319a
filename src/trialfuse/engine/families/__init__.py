"""Model families: what each trains, how it searches, how it saves.

Each family's module (named by its row in `trialfuse.catalog`) exposes the same four
functions and imports its library only when loaded, so the driver, which only names
families, never imports torch:

- `fit(params, X_train, y_train, X_val, y_val, *, device, threads, seed, rounds=None,
  deadline=None) -> Fitted`: with validation rows it stops early on them; with `X_val=None`
  it trains exactly `rounds` boosting rounds or epochs (the final retrain on all search
  rows). Past `deadline` (time.time()) it raises `DeadlineReached` within a round or an
  epoch, so a run's time budget holds inside a job too.
- `predict(model, X) -> np.ndarray` (float64, one value per row; X may hold NaN).
- `save(model, directory) -> str`: writes the library's native file, returns its name.
- `load(path)`: reads that file back with the library alone.
- `contributions(model, X)`, where the library computes SHAP values exactly (TreeSHAP in
  XGBoost, LightGBM, CatBoost): [rows, features], for the winner's explanation.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from trialfuse.catalog import FAMILIES


@dataclass
class Fitted:
    """A trained model and how many rounds (trees or epochs) it kept and ran."""

    model: Any
    best_rounds: int
    rounds_run: int


def family_module(name: str) -> ModuleType:
    """Import a family's training module on demand (inside a worker process)."""
    return importlib.import_module(f"trialfuse.engine.families.{FAMILIES[name].engine}")


class DeadlineReached(Exception):
    """The run's time budget ended while this job trained: its trial is cut, not failed."""


def check_deadline(deadline: float | None) -> None:
    """Raise DeadlineReached once time.time() is past `deadline` (None: no deadline)."""
    if deadline is not None and time.time() > deadline:
        raise DeadlineReached("stopped by the time budget")
