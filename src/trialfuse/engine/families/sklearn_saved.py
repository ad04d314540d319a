"""How a scikit-learn model is served and saved (hgb and the forests): `predict_proba` for
classes, `predict` for numbers; joblib, scikit-learn's own persistence: `joblib.load(path)`
needs only scikit-learn (joblib comes with it), where skops would add a dependency and a list
of trusted types to load what this run itself wrote."""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np

FILE = "model.joblib"


def predict(model, X: np.ndarray) -> np.ndarray:
    """Values for numbers, class probabilities [rows, K] for a classifier."""
    X = np.asarray(X, dtype=np.float64)
    out = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
    return np.asarray(out, dtype=np.float64)


def save(model, directory) -> str:
    joblib.dump(model, Path(directory) / FILE)
    return FILE


def load(path):
    return joblib.load(path)
