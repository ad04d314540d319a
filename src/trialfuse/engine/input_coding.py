"""What the NN reads of a row of raw features (`InputCoding`), fit on a fold's training rows
only, never on its validation rows: numbers imputed with their mean and standardized, a 0/1
"missing" input beside a number column with missing training values, and category columns
(the table's codes) as one 0/1 input per frequent level. `code_inputs` is its one definition,
in torch: training codes its rows with it, and the saved model (mlp.ScaledMLP, exported) runs
the same ops on a raw row.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

MIN_LEVEL_ROWS = 10  # a category level gets an input of its own where this many training rows hold it
MAX_LEVELS = 64  # inputs per category column at most: its most frequent levels


@dataclass(frozen=True)
class InputCoding:
    """What the network reads from a row of raw features: each number imputed with its training
    mean and standardized, and for a number column with missing training values a 0/1 input
    "missing" beside it; each category column (the table's codes) as one 0/1 input per level
    that MIN_LEVEL_ROWS training rows hold, its MAX_LEVELS most frequent (a rarer, unseen or
    missing level reads as all zeros; a column with no such level stays a number).
    Codes read as numbers order the levels by their text, which means nothing to a network; one
    input per level, and the "missing" inputs, each raised its CV score on the public tables
    (bench/results/HISTORY.md, "Figures that lived in code comments")."""

    x_mean: np.ndarray  # [F] every column's training mean and std (category columns' unused)
    x_std: np.ndarray
    numeric: np.ndarray  # int [F_numbers]: the columns read as numbers, in order
    missing: np.ndarray  # int [M]: the number columns with a "missing" input, in order
    level_columns: np.ndarray  # int [L]: the column of each level input
    level_codes: np.ndarray  # [L]: its code

    @classmethod
    def of(cls, X: np.ndarray, categorical: Sequence[int] = ()) -> InputCoding:
        """The coding fit on training rows X."""
        x_mean, x_std = column_stats(X)
        categorical = set(categorical)
        columns, codes, numeric = [], [], []
        for c in range(X.shape[1]):
            levels = _frequent_levels(X[:, c]) if c in categorical else []
            if not levels:
                numeric.append(c)
            columns += [c] * len(levels)
            codes += levels
        missing = [c for c in numeric if np.isnan(X[:, c]).any()]
        return cls(x_mean, x_std, *(np.array(a, dtype=np.int64) for a in (numeric, missing, columns)),
                   np.array(codes, dtype=np.float64))

    @property
    def width(self) -> int:
        """Inputs the network has."""
        return len(self.numeric) + len(self.missing) + len(self.level_codes)

    @property
    def plain(self) -> bool:
        """Every column a number, none missing in training: the inputs are the standardized columns."""
        return not len(self.missing) and not len(self.level_codes)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """[N, width]: numbers, "missing" inputs, level inputs, by `code_inputs` (what `ScaledMLP`
        runs on a raw row)."""
        parts = (X, self.x_mean, self.x_std, self.numeric, self.missing, self.level_columns, self.level_codes)
        return code_inputs(*(torch.as_tensor(np.asarray(a)) for a in parts), coded=not self.plain).numpy()


def code_inputs(x: torch.Tensor, x_mean: torch.Tensor, x_std: torch.Tensor, numeric: torch.Tensor,
                missing: torch.Tensor, level_columns: torch.Tensor, level_codes: torch.Tensor,
                coded: bool = True) -> torch.Tensor:
    """Raw rows x [N, F] as the network reads them [N, width] (InputCoding's parts): each number
    imputed with its mean and standardized, a 0/1 "missing" input per `missing` column, one 0/1
    input per level (NaN matches none); with `coded` False the standardized columns alone. One
    definition in torch, so training (InputCoding.apply) and the exported model (ScaledMLP) read
    a row alike."""
    z = (torch.where(torch.isnan(x), x_mean, x) - x_mean) / x_std
    if not coded:
        return z
    return torch.cat([z[:, numeric], torch.isnan(x[:, missing]).to(z.dtype),
                      (x[:, level_columns] == level_codes).to(z.dtype)], dim=1)


def _frequent_levels(column: np.ndarray) -> list[float]:
    values, counts = np.unique(column[~np.isnan(column)], return_counts=True)
    frequent = [v for v, n in sorted(zip(values, counts, strict=True), key=lambda vn: -vn[1])[:MAX_LEVELS]
                if n >= MIN_LEVEL_ROWS]
    return sorted(float(v) for v in frequent)


def column_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each column ignoring NaN; a column with no spread gets std 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected here
        mean = np.nanmean(X, axis=0)
        std = np.nanstd(X, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean, std
