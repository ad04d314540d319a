"""The reference "survivors" table: 62 float features, one noisy quality score.

Same recipe and the same values, seed for seed, as the project's reference script, so the
demo, tests and benchmarks need nothing outside the package. The signal is partly
nonlinear (sine, products, thresholds) under unit Gaussian noise: the noise ceiling is
R² ≈ 0.48.

Its classification version (`make_survivor_bands`, `write_survivors(..., bands=K)`) keeps the
features and replaces the score by its band: K equal-count bands cut at the score's
quantiles over the table's own rows (2: "low"/"high" at the median; K > 2: "band-1" for the
lowest to "band-K"), text labels in a column named "band".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

N_FEATURES = 62
TARGET = "score"
BAND_TARGET = "band"


def make_survivors(rows: int = 98_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (X float32 [rows, 62], y float32 [rows], feature names)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, N_FEATURES)).astype(np.float64)
    X[:, 40:50] = rng.standard_t(3, size=(rows, 10))  # heavy tails
    X[:, 50:56] = rng.integers(0, 8, size=(rows, 6))  # small-integer counts
    X[:, 56:62] = rng.uniform(0, 1, size=(rows, 6))  # bounded rates
    signal = (
        0.8 * np.sin(1.5 * X[:, 0])
        + 0.6 * X[:, 1] * X[:, 2]
        + 0.5 * np.where(X[:, 3] > 0.5, 1.0, -0.3)
        + 0.4 * np.tanh(X[:, 40])
        + 0.3 * (X[:, 50] % 3 == 0)
        + 0.7 * (X[:, 56] - 0.5) ** 2 * 4
        + 0.2 * X[:, 4:10].sum(axis=1) / np.sqrt(6)
    )
    noise = rng.standard_normal(rows) * 1.0
    y = (signal + noise).astype(np.float32)
    names = [f"f{i:02d}" for i in range(N_FEATURES)]
    return X.astype(np.float32), y, names


def score_bands(y: np.ndarray, bands: int) -> np.ndarray:
    """The band label of each score: K equal-count bands cut at the scores' own quantiles."""
    if bands < 2:
        raise ValueError(f"bands must be at least 2, got {bands}")
    labels = np.array(["low", "high"] if bands == 2 else [f"band-{k + 1}" for k in range(bands)])
    edges = np.quantile(y, np.arange(1, bands) / bands)
    return labels[np.searchsorted(edges, y, side="right")]


def make_survivor_bands(rows: int = 98_000, seed: int = 0, bands: int = 2) -> tuple[np.ndarray, np.ndarray,
                                                                                      list[str]]:
    """Return (X float32 [rows, 62], each row's band label (text) [rows], feature names)."""
    X, y, names = make_survivors(rows, seed)
    return X, score_bands(y, bands), names


def write_survivors(path: str | Path, rows: int = 98_000, seed: int = 0, bands: int | None = None) -> Path:
    """Write the table as .npz (X, y, feature_names) or .csv (target column "score"; with
    `bands`, the classification version: column "band" instead)."""
    path = Path(path)
    X, y, names = make_survivors(rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bands is not None:
        if path.suffix != ".csv":
            raise ValueError("the banded survivors table is written as .csv (its labels are text)")
        import pandas as pd

        frame = pd.DataFrame(X, columns=names)
        frame[BAND_TARGET] = score_bands(y, bands)
        frame.to_csv(path, index=False, float_format="%.7g")
        return path
    if path.suffix == ".npz":
        np.savez(path, X=X, y=y, feature_names=np.array(names))
    elif path.suffix == ".csv":
        header = ",".join([*names, TARGET])
        np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.7g")
    else:
        raise ValueError(f"survivors table must be .npz or .csv, not {path.suffix!r}")
    return path
