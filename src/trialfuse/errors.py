"""Errors the user caused, as opposed to faults of ours.

A `UserError` becomes one line on stderr and exit code 2 in the CLI; everything else
is an internal failure (exit code 1).
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input or usage: reported as one clear line, never as a traceback."""


class DataWarning(UserWarning):
    """Rows read other than as given, in the Python API (the CLI prints the same lines): values a
    model never saw or cannot read, taken as missing, which change its predictions."""
