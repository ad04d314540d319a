"""trialfuse: find the best model for a tabular problem (numbers or classes) without overfitting.

Python API (the CLI's powers):

    import trialfuse
    model = trialfuse.fit(frame, "price", timeout="60s")   # a DataFrame (or a path, or X with y=)
    model.leaderboard(); model.predict(new_rows); model.explain(); trialfuse.load(model.run_dir)
    from trialfuse import TrialfuseRegressor, TrialfuseClassifier  # scikit-learn estimators
    per_fold = trialfuse.train_many(nn_configs, X, y, folds, device="cuda", fuse="auto")  # fused NN training

Names load on first use: the driver side never imports torch, and the NN engine and the
benchmark need only numpy, scikit-learn and torch (no optuna or tree libraries).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
_EXPORTS = {
    "fit": "trialfuse.model",
    "load": "trialfuse.model",
    "Model": "trialfuse.model",
    "TrialfuseRegressor": "trialfuse.estimators",
    "TrialfuseClassifier": "trialfuse.estimators",
    "RunOptions": "trialfuse.driver.run",
    "compare_models": "trialfuse.api",
    "UserError": "trialfuse.errors",
    "DataWarning": "trialfuse.errors",
    "predict_table": "trialfuse.predict",
    "make_survivors": "trialfuse.survivors",
    "write_survivors": "trialfuse.survivors",
    "train_many": "trialfuse.engine.fused.train",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trialfuse' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The names that load on first use beside the module's own, for dir() and a notebook's completion."""
    return sorted({*globals(), *_EXPORTS})
