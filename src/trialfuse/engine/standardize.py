"""Per-fold feature statistics: fit on the training rows only, never on validation rows.

NumPy only, so the driver and every engine share one definition.
"""
from __future__ import annotations

import warnings

import numpy as np


def column_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each column ignoring NaN; a column with no spread gets std 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected here
        mean = np.nanmean(X, axis=0)
        std = np.nanstd(X, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean, std


def standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Impute missing values with the training mean, then scale to unit variance."""
    X = np.where(np.isnan(X), mean, X)
    return (X - mean) / std
