"""Errors the user caused, as opposed to faults of ours.

A `UserError` becomes one line on stderr and exit code 2 in the CLI; everything else
is an internal failure (exit code 1). It is a `ValueError` (bad input is one), so code written
for scikit-learn's estimators (`error_score`, its estimator checks) reads it as it reads theirs.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input or usage: reported as one clear line, never as a traceback."""


class RunFailed(RuntimeError):
    """Work that ran but could not end in what it makes: a run that saved no model (every family
    failed, or none finished within `--timeout`; the study keeps what was tried for a rerun), an
    explanation that does not fit its limit. One line and exit code 1."""


class DataWarning(UserWarning):
    """Rows read other than as given, in the Python API (the CLI prints the same lines): values a
    model never saw or cannot read, taken as missing, which change its predictions."""


def warn_data(line: str) -> None:
    """`line` as a DataWarning attributed to the first caller outside trialfuse: the user's own
    line, however deep in the package it was found (Model.predict, an estimator, predict_table)."""
    import sys
    import warnings

    level, frame = 2, sys._getframe(1)  # stacklevel 2: this function's caller
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "trialfuse":
        level, frame = level + 1, frame.f_back
    warnings.warn(line, DataWarning, stacklevel=level)
