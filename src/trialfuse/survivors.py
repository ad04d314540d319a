"""The reference "survivors" table: 62 float features, one noisy quality score.

Same recipe and the same values, seed for seed, as the project's reference script, so the
demo, tests and benchmarks need nothing outside the package. The signal is partly
nonlinear (sine, products, thresholds) under unit Gaussian noise: the noise ceiling is
R² ≈ 0.48.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

N_FEATURES = 62
TARGET = "score"


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


def write_survivors(path: str | Path, rows: int = 98_000, seed: int = 0) -> Path:
    """Write the table as .npz (X, y, feature_names) or .csv (target column "score")."""
    path = Path(path)
    X, y, names = make_survivors(rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, X=X, y=y, feature_names=np.array(names))
    elif path.suffix == ".csv":
        header = ",".join([*names, TARGET])
        np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.7g")
    else:
        raise ValueError(f"survivors table must be .npz or .csv, not {path.suffix!r}")
    return path
