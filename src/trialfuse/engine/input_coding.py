"""What the NN reads of a row of raw features (`InputCoding`), fit on a fold's training rows
only, never on its validation rows: numbers imputed with their mean and standardized, beside a
long-tailed number none negative its log as a second input, a 0/1 "missing" input beside a number column
with missing training values, and category columns (the table's codes) as one 0/1 input per
frequent level; a number's codes for "unknown" (-999) as inputs of their own, and values far
beyond the others read as missing (`far_values`). `code_inputs` is its one definition,
in torch: training codes its rows with it, and the saved model (mlp.ScaledMLP, exported) runs
the same ops on a raw row.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trialfuse import far_values
from trialfuse.engine.row_sample import sampled

MIN_LEVEL_ROWS = 10  # a category level gets an input of its own where this many training rows hold it
MAX_LEVELS = 64  # inputs per category column at most: its most frequent levels
FIT_ROWS = 100_000  # a fold's coding fit on at most this many of its rows: on 700,000 it took 6.3 s, unstoppable
SKEWED = 1.0  # skewness of a number column's training values from which its log is an input too


@dataclass(frozen=True)
class InputCoding:
    """What the network reads from a row of raw features: each number imputed with its training
    mean and standardized, and for a number column with missing training values a 0/1 input
    "missing" beside it; each category column (the table's codes) as one 0/1 input per level
    that MIN_LEVEL_ROWS training rows hold, its MAX_LEVELS most frequent (a rarer, unseen or
    missing level reads as all zeros; a column with no such level stays a number); and beside
    a long-tailed number column none negative (`log_scale_of`) its log, imputed and standardized alike.
    Codes read as numbers order the levels by their text, which means nothing to a network; one
    input per level, and the "missing" inputs, each raised its CV score on the public tables
    (bench/results/HISTORY.md, "Figures that lived in code comments"). A long tail (votes, a
    budget) standardized leaves most rows in a sliver of the input's range, which a network fits
    poorly; read through a log alone, a number the target follows linearly (a departure delay)
    is fitted worse: with both inputs the network has each (HISTORY.md, "Skewed inputs"). A
    number column's codes (`far_values`) are level inputs of their own, the number read as
    missing there, and a stray value far beyond the others is read as missing: neither sets the
    spread, nor a line to extrapolate along."""

    x_mean: np.ndarray  # [F + G] every column's training mean and std (category columns' unused),
    x_std: np.ndarray  # then each logged column's log's
    numeric: np.ndarray  # int [F_numbers + G]: the columns read as numbers, in order, then F .. F + G - 1
    missing: np.ndarray  # int [M]: the number columns with a "missing" input, in order
    level_columns: np.ndarray  # int [L]: the column of each level input
    level_codes: np.ndarray  # [L]: its code
    logged: np.ndarray  # int [G]: the number columns whose log is an input too
    log_scale: np.ndarray  # [G]: each one's s in log1p(x / s)
    code_columns: np.ndarray  # int [C]: the column of each code (each is a level input too)
    code_values: np.ndarray  # [C]: its value
    x_low: np.ndarray  # [F]: below it a number is stray, read as missing (category columns' -inf)
    x_high: np.ndarray  # [F]: above it, too (inf)

    @classmethod
    def of(cls, X: np.ndarray, categorical: Sequence[int] = ()) -> InputCoding:
        """The coding fit on training rows X: its statistics on at most FIT_ROWS of them (a seeded
        draw, and the rows of a column with few values), whether a column has blanks on all."""
        categorical = set(categorical)
        present = ~np.isnan(X)
        blanks = ~present.all(axis=0)
        if len(X) > FIT_ROWS:  # and every row of a column with few values: a draw could hold none of them
            rare = present[:, present.sum(axis=0) < FIT_ROWS // 100].any(axis=1)
            X = X[np.union1d(sampled(np.arange(len(X)), FIT_ROWS, 0), np.flatnonzero(rare))]
        far = far_values.of_columns(X, [c for c in range(X.shape[1]) if c not in categorical])
        code_columns = np.array([c for c, f in far.items() for _ in f.codes], dtype=np.int64)
        code_values = np.array([value for f in far.values() for value in f.codes], dtype=np.float64)
        none = far_values.FarValues()
        x_low, x_high = (np.array([getattr(far.get(c, none), end) for c in range(X.shape[1])], dtype=np.float64)
                         for end in ("low", "high"))
        read = readings(*(torch.as_tensor(a) for a in (X, code_columns, code_values, x_low, x_high))).numpy()
        scales = {c: s for c in far if (s := log_scale_of(read[:, c])) > 0}
        logged, log_scale = np.array(list(scales), dtype=np.int64), np.array(list(scales.values()), dtype=np.float64)
        x_mean, x_std = column_stats(with_logs(*(torch.as_tensor(a) for a in (read, logged, log_scale))).numpy())
        columns, codes, numeric = [], [], []
        for c in range(X.shape[1]):
            levels = _frequent_levels(X[:, c]) if c in categorical else list(far[c].codes)
            if c in far or not levels:
                numeric.append(c)
            columns += [c] * len(levels)
            codes += levels
        missing = [c for c in numeric if blanks[c]]
        numeric += range(X.shape[1], X.shape[1] + len(logged))
        return cls(x_mean, x_std, *(np.array(a, dtype=np.int64) for a in (numeric, missing, columns)),
                   np.array(codes, dtype=np.float64), logged, log_scale, code_columns, code_values, x_low, x_high)

    @property
    def width(self) -> int:
        """Inputs the network has."""
        return len(self.numeric) + len(self.missing) + len(self.level_codes)

    @property
    def plain(self) -> bool:
        """Every column a number, none missing in training: the inputs are the standardized columns
        (and logs)."""
        return not len(self.missing) and not len(self.level_codes)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """[N, width]: numbers, "missing" inputs, level inputs, by `code_inputs` (what `ScaledMLP`
        runs on a raw row)."""
        parts = (X, *(getattr(self, name) for name in PARTS))
        return code_inputs(*(torch.as_tensor(np.asarray(a)) for a in parts), coded=not self.plain).numpy()


PARTS = ("x_mean", "x_std", "numeric", "missing", "level_columns", "level_codes", "logged", "log_scale",
         "code_columns", "code_values", "x_low", "x_high")  # what code_inputs takes, in its order
INDICES = {"numeric", "missing", "level_columns", "logged", "code_columns"}  # the parts that are column numbers


def code_inputs(x: torch.Tensor, x_mean: torch.Tensor, x_std: torch.Tensor, numeric: torch.Tensor,
                missing: torch.Tensor, level_columns: torch.Tensor, level_codes: torch.Tensor,
                logged: torch.Tensor, log_scale: torch.Tensor, code_columns: torch.Tensor, code_values: torch.Tensor,
                x_low: torch.Tensor, x_high: torch.Tensor, coded: bool = True) -> torch.Tensor:
    """Raw rows x [N, F] as the network reads them [N, width] (InputCoding's parts): each number
    (codes and stray values as missing, `readings`) and each `logged` column's log imputed with
    its mean and standardized, a 0/1 "missing" input per `missing` column (a blank cell), one 0/1
    input per level or code (NaN matches none); with `coded` False the standardized columns and
    logs alone. One definition in torch, so training (InputCoding.apply) and the exported model
    (ScaledMLP) read a row alike."""
    x_logs = with_logs(readings(x, code_columns, code_values, x_low, x_high), logged, log_scale)
    z = (torch.where(torch.isnan(x_logs), x_mean, x_logs) - x_mean) / x_std
    if not coded:
        return z
    return torch.cat([z[:, numeric], torch.isnan(x[:, missing]).to(z.dtype),
                      _equal(x[:, level_columns], level_codes).to(z.dtype)], dim=1)


def readings(x: torch.Tensor, code_columns: torch.Tensor, code_values: torch.Tensor, x_low: torch.Tensor,
             x_high: torch.Tensor) -> torch.Tensor:
    """x [N, F] with what is no reading of a number as NaN: each code (`code_values[i]` in column
    `code_columns[i]`) and each value outside its column's (x_low, x_high). No branch, so the
    exported model's graph is the same with no code."""
    hit = _equal(x[:, code_columns], code_values).to(x.dtype)  # [N, C]
    coded = torch.zeros_like(x).index_add(1, code_columns, hit) > 0
    return torch.where(coded | (x < x_low) | (x > x_high), torch.nan, x)


def _equal(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """x == values compared in float32, as a model served in float32 compares them: a value that
    only float64 tells from a code (1e9 + 1 and 1e9) is the code in training too."""
    return x.to(torch.float32) == values.to(torch.float32)


def with_logs(x: torch.Tensor, logged: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """x [N, F] and after it each `logged` column's log1p(x / s) [N, G] (NaN stays NaN); signed,
    sign(x) log1p(|x| / s), so a value below zero met at predict time reads as a number, not NaN."""
    part = x[:, logged]
    return torch.cat([x, torch.sign(part) * torch.log1p(torch.abs(part) / log_scale)], dim=1)


def log_scale_of(column: np.ndarray) -> float:
    """The scale s (the median nonzero value) where a number column's training values are none
    negative (a count, an amount, a duration) and skewed (skewness at least SKEWED), and
    log1p(x / s) is less so; 0 (no log) otherwise. A column with negative values keeps its one
    input: where half of them were below zero (the reference table's f44 and f48), a signed log
    bent both sides and the network's CV R² fell (HISTORY.md, "Skewed inputs")."""
    values = column[~np.isnan(column)]
    nonzero = values[values != 0]
    if not len(nonzero) or values.min() < 0:
        return 0.0
    before = _skewness(values)  # first: the sort below runs only for the few skewed columns
    if not before >= SKEWED or len(np.unique(values)) < 3:  # a 0/1 column can be skewed too
        return 0.0
    scale = float(np.median(nonzero))
    if not np.isfinite(np.float32(values.max() / scale)) or np.float32(scale) == 0:  # a model may run in float32
        return 0.0
    return scale if abs(_skewness(np.log1p(values / scale))) < before else 0.0


def _skewness(values: np.ndarray) -> float:
    centred = values - values.mean()
    spread = np.sqrt(np.mean(centred ** 2))
    return float(np.mean(centred ** 3) / spread ** 3) if spread > 0 else 0.0


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
