"""Model families: what each trains, how it searches, how it saves.

Each family module (`mlp`, `xgboost_trees`, `lightgbm_trees`, `catboost_trees`) exposes the
same four functions, and imports its library only when loaded, so the driver, which only
names families, never imports torch:

- `fit(params, X_train, y_train, X_val, y_val, *, device, threads, seed, rounds=None) -> Fitted`:
  with validation rows it stops early on them; with `X_val=None` it trains exactly `rounds`
  boosting rounds or epochs (the final retrain on all search rows).
- `predict(model, X) -> np.ndarray` (float64, one value per row; X may hold NaN).
- `save(model, directory) -> str`: writes the library's native file, returns its name.
- `load(path)`: reads that file back with the library alone.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

FAMILIES = ("nn", "xgboost", "lightgbm", "catboost")
_MODULES = {"nn": "mlp", "xgboost": "xgboost_trees", "lightgbm": "lightgbm_trees", "catboost": "catboost_trees"}


@dataclass
class Fitted:
    """A trained model and how many rounds (trees or epochs) it kept and ran."""

    model: Any
    best_rounds: int
    rounds_run: int


def family_module(name: str) -> ModuleType:
    """Import a family's training module on demand (inside a worker process)."""
    return importlib.import_module(f"trialfuse.families.{_MODULES[name]}")
