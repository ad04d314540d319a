"""An ensemble's prediction from its members' predictions, and a member's from its K fold
models': one function each for the run's holdout score, `trialfuse predict` and the
explanation, so all three agree to the bit. Library-free, so every layer may use it."""
from __future__ import annotations

import numpy as np


def combine(predictions, weights) -> np.ndarray:
    """The weighted sum of the members' predictions (values [rows], or class probabilities
    [rows, K]), in member order."""
    out = np.zeros(np.shape(predictions[0]), dtype=np.float64)
    for member, weight in zip(predictions, weights, strict=True):
        out += float(weight) * np.asarray(member, dtype=np.float64)
    return out


def fold_mean(predictions) -> np.ndarray:
    """A model served as its K fold models (no refit): their equal-weight mean, in fold order."""
    return combine(predictions, [1.0 / len(predictions)] * len(predictions))
