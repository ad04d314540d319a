"""Values far from the rest of their column, as the NN must read them: one rule (numpy only) for
the NN's inputs (`engine/input_coding.py`) and the driver's warning (`driver/data_checks.py`).

A network reads a number through a straight line before its first bend, so one value a million
times the others' spread (a typo, 1e7 among values near 0) ends on a line it extrapolates: one
such row gave an NN's CV R² of -1e10 where the trees were untouched. And a code for "unknown"
written as a number (-999, 1e9) in 1% of the rows sets the column's spread, leaving every real
value in a sliver of it: the NN's holdout R² fell from 0.98 to 0.35. So:

- a code is an extreme value (the column's least or greatest) held by at least CODE_ROWS rows
  that lies beyond the fences of the other values: the NN reads it as missing, with the
  column's "missing" input saying so, which tells the network exactly what the value did (the
  trees read the column as it is);
- fences are FAR times the spread of the middle 98% beyond it (q01 - FAR (q99 - q01), q99 +
  FAR (q99 - q01)): a value beyond is read at the fence. A normal column's fences lie 16
  standard deviations out, where no real value reaches; a long tail (a log-normal of sigma 2)
  has 0.1% of its values beyond, where the network's log input (input_coding) still orders them.
"""
from __future__ import annotations

import numpy as np

FAR = 3.0  # fences: this many times the middle 98%'s spread beyond its ends
CODE_ROWS = 2  # rows an extreme value beyond the fences needs to be a code (one alone is a stray value)
MAX_CODES = 4  # codes a column has at most (-999 and 999, -1e9 and -1e9 + 1, ...)


def fences(values: np.ndarray, far: float = FAR) -> tuple[float, float]:
    """(low, high) of present values: `far` times the spread of their middle 98% beyond its ends;
    (-inf, inf) where that middle has no spread (a column mostly one value: no value is far)."""
    return _fences(np.sort(values[~np.isnan(values)]), far)


def codes(column: np.ndarray) -> list[float]:
    """A number column's codes: its least few and greatest few values (at most MAX_CODES in all),
    each held by at least CODE_ROWS rows, that lie beyond the fences of the values left; the most
    such values there are. Both ends are weighed together: -999 and 9999 in 1% of the rows each
    hide each other from a test of one at a time."""
    ordered = np.sort(column[~np.isnan(column)])
    lows, highs = _ends(ordered), _ends(ordered[::-1])
    found: list[float] = []
    for low_cut in range(len(lows) + 1):
        for high_cut in range(min(len(highs), MAX_CODES - low_cut) + 1):
            ends = [*lows[:low_cut], *highs[:high_cut]]
            if len(ends) <= len(found):
                continue
            first = ends[low_cut - 1][1] if low_cut else 0
            last = len(ordered) - (highs[high_cut - 1][1] if high_cut else 0)
            low, high = _fences(ordered[first:last])
            if (not low_cut or lows[low_cut - 1][0] < low) and (not high_cut or highs[high_cut - 1][0] > high):
                found = [value for value, _ in ends]
    return sorted(found)


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


def _fences(ordered: np.ndarray, far: float = FAR) -> tuple[float, float]:
    if not len(ordered):
        return -np.inf, np.inf
    low, high = (_quantile(ordered, q) for q in (0.01, 0.99))
    spread = high - low
    if not spread > 0:
        return -np.inf, np.inf
    return float(low - far * spread), float(high + far * spread)


def _quantile(ordered: np.ndarray, q: float) -> float:
    """np.quantile's (linear) of sorted values, without sorting them again."""
    at = q * (len(ordered) - 1)
    below = int(at)
    above = min(below + 1, len(ordered) - 1)
    return float(ordered[below] + (at - below) * (ordered[above] - ordered[below]))
