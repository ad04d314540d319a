"""Values far from the rest of their column, as the NN must read them: one rule (numpy only) for
the NN's inputs (`engine/input_coding.py`) and the driver's warning (`driver/data_checks.py`).

A network reads a number through a straight line before its first bend. A code for "unknown"
written as a number (-999, 1e9) on 1% of the rows sets the column's spread and leaves every real
value in a sliver of it; one typo (1e7 among values near 0) does as much, and its row's target,
which does not follow it, pulls the whole fit: either left an NN R² of 0.36 where the clean table
gave 0.99 (bench/results/HISTORY.md, "Codes for unknown"). The trees read both as they are. So:

- a code is one of a column's least or greatest values, held by CODE_ROWS rows or more, with a
  gap to the nearest other value of more than GAP times the spread of the others' middle 98%
  (q99 - q01): -999 below counts of 0 to 100, 99999 above incomes that end at 41,310. The NN
  reads each code as its own 0/1 input (as a category level), and the number as missing there;
  a count whose top values are merely tied (8, 9, 10, 11 above a spike at 0) has no such gap;
- a stray value lies more than STRAY times that spread beyond the middle 98%: the NN reads it as
  missing. Held at a nearer fence instead, a long tail the target follows (a t or Pareto column)
  lost up to 0.5 of its R²; a fence at STRAY spreads held the typo's row in the fit (R² 0.49).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GAP = 3.0  # a code's gap to the other values, in spreads of their middle 98%
STRAY = 100.0  # a value this many spreads beyond the middle 98% is no reading
CODE_ROWS = 2  # rows a far extreme value needs to be a code (one alone is a stray value)
MAX_CODES = 4  # codes a column has at most (-999 and 9999; -1e9 and 1e9)


@dataclass(frozen=True)
class FarValues:
    """What is far in one number column: its codes, and the bounds past which a value is stray
    (-inf, inf where the values have no spread to judge by: a column of one value and one other)."""

    codes: tuple[float, ...] = ()
    low: float = -np.inf
    high: float = np.inf


def far_values(column: np.ndarray) -> FarValues:
    """The codes and stray bounds of one number column (`of_columns`)."""
    return of_columns(column[:, None], [0])[0]


def of_columns(X: np.ndarray, columns: Sequence[int]) -> dict[int, FarValues]:
    """Each number column's codes (the most its two ends allow, both ends weighed together: -999
    and 9999 on 1% of the rows each hide each other from a test of one at a time) and stray
    bounds. The quantiles of every column come from one call; a column whose values all lie
    within 3 interquartile ranges of its quartiles (most columns) has no code and no stray value
    (a code's gap alone is 3 spreads of the middle 98%, which is wider), so only the others are
    sorted one by one: the coding is fit per fold and trial, and a per-column call cost 5x the
    rest of it on a 62-column table."""
    columns = list(columns)
    if not len(X):
        return {c: FarValues() for c in columns}
    if not columns:
        return {}
    part = X[:, columns]
    counts = (~np.isnan(part)).sum(axis=0)
    if counts.min() == len(part):
        q01, q25, q75, q99 = np.quantile(part, [0.01, 0.25, 0.75, 0.99], axis=0)
        least, most = part.min(axis=0), part.max(axis=0)
    else:  # NaN sorts last: each column's quantiles from its own present values
        ordered = np.sort(part, axis=0)
        q01, q25, q75, q99 = (_quantile_each(ordered, counts, q) for q in (0.01, 0.25, 0.75, 0.99))
        least, most = ordered[0], ordered[np.maximum(counts - 1, 0), np.arange(len(columns))]
    reach = 3 * (q75 - q25)
    near = (reach > 0) & (least >= q25 - reach) & (most <= q75 + reach)
    found = {}
    for i, c in enumerate(columns):
        if counts[i] < 2:
            found[c] = FarValues()
        elif near[i]:  # the bounds still judge rows met at predict time
            found[c] = FarValues((), *_bounds(q01[i], q99[i]))
        else:
            found[c] = _far(np.sort(X[~np.isnan(X[:, c]), c]))
    return found


def _far(ordered: np.ndarray) -> FarValues:
    """The codes and stray bounds of a column's present values, sorted."""
    lows, highs = _ends(ordered), _ends(ordered[::-1])
    best, best_cuts = [], (0, len(ordered))
    for low_cut in range(len(lows) + 1):
        for high_cut in range(min(len(highs), MAX_CODES - low_cut) + 1):
            if low_cut + high_cut <= len(best):
                continue
            first = lows[low_cut - 1][1] if low_cut else 0
            last = len(ordered) - (highs[high_cut - 1][1] if high_cut else 0)
            spread = _spread(ordered[first:last])
            if last > first and spread > 0 \
                    and (not low_cut or ordered[first] - lows[low_cut - 1][0] > GAP * spread) \
                    and (not high_cut or highs[high_cut - 1][0] - ordered[last - 1] > GAP * spread):
                best, best_cuts = [v for v, _ in lows[:low_cut] + highs[:high_cut]], (first, last)
    return FarValues(tuple(sorted(best)), *_bounds(*_middle(ordered[best_cuts[0]:best_cuts[1]])))


def _bounds(q01: float, q99: float) -> tuple[float, float]:
    """STRAY spreads of the middle 98% beyond it; none where it has no spread."""
    spread = float(q99 - q01)
    return (float(q01 - STRAY * spread), float(q99 + STRAY * spread)) if spread > 0 else (-np.inf, np.inf)


def _middle(ordered: np.ndarray) -> tuple[float, float]:
    """The ends of sorted values' middle 98%; where one value fills it (a column 99% zeros), from
    that value to the ends of the other values' middle 98%: a typo among a sparse column's amounts
    is judged by the amounts, as any column's by its values (before, such a column had no bounds:
    one typo there took the NN's holdout R² from 0.99 to 0.86)."""
    low, high = _quantile(ordered, 0.01), _quantile(ordered, 0.99)
    if low == high:
        others = ordered[ordered != low]
        if len(others) > 2:  # their least and greatest left out: among a few amounts a typo would set the 99th
            low, high = min(low, _quantile(others[1:-1], 0.01)), max(high, _quantile(others[1:-1], 0.99))
    return low, high


def _ends(ordered: np.ndarray) -> list[tuple[float, int]]:
    """The first distinct values of `ordered` (at most MAX_CODES, each held by CODE_ROWS rows or
    more, stopping at the first that is not), each with how many values it and those before take."""
    ends, taken = [], 0
    while len(ends) < MAX_CODES and taken < len(ordered):
        value = ordered[taken]
        held = int(np.argmax(ordered[taken:] != value)) or len(ordered) - taken
        if held < CODE_ROWS:
            break
        taken += held
        ends.append((float(value), taken))
    return ends


def _spread(ordered: np.ndarray) -> float:
    if not len(ordered):
        return 0.0
    low, high = _middle(ordered)
    return high - low


def _quantile_each(ordered: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """np.quantile's (linear) of each column of `ordered` (sorted, NaN last) over its `counts` values."""
    at = q * np.maximum(counts - 1, 0)
    below = np.floor(at).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(counts - 1, 0))
    index = np.arange(ordered.shape[1])
    return ordered[below, index] + (at - below) * (ordered[above, index] - ordered[below, index])


def _quantile(ordered: np.ndarray, q: float) -> float:
    """np.quantile's (linear) of sorted values, without sorting them again."""
    at = q * (len(ordered) - 1)
    below = int(at)
    above = min(below + 1, len(ordered) - 1)
    return float(ordered[below] + (at - below) * (ordered[above] - ordered[below]))
