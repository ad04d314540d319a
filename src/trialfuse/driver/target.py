"""How a target column decides the run's task (`--task auto`) and its `y`, and which targets
are refused, with one line each, before anything trains.

How `auto` decides, from the target column alone:
- text, category or boolean values -> classification (binary for two classes), except numbers
  stored with a stray text (NUMBERS_WITH_STRAYS of the rows numbers): refused, naming the text;
- text that is numbers throughout ("12.5", "7": a Parquet or JSON file's strings) is decided
  as those numbers would be, as a CSV reader would have read them, and searched as numbers
  where they are (regression); where they are classes, or where they are codes (a whole
  number written with a leading zero, "007", "01", or two texts that are one number), the
  texts are the classes;
- numbers with exactly two distinct values (0/1, 1/2, -1/1) -> binary;
- whole numbers that are exactly 0, 1, ..., K-1 for 3 <= K <= MAX_CODED_CLASSES -> multiclass
  (the way classes are label-encoded); any other few whole values (ratings 1-5, counts) are
  searched as numbers, with a one-line hint that `--task multiclass` exists;
- anything else -> regression.

A regression target that is a count (`is_count`: whole numbers, none negative, starting at 0 or
1, at least three of them, with a right tail) has the boosting families search the Poisson deviance beside squared
error (Task.objectives).
"""
from __future__ import annotations

import datetime
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from trialfuse.driver import dates as date_parts
from trialfuse.driver.table_files import CODE, as_text, has_codes
from trialfuse.errors import UserError
from trialfuse.task import CLASS_WEIGHTS, METRICS, Kind, Objective, Task, plain_label

MAX_CLASSES = 100  # more than this is an identifier or a number, not a class to predict
MAX_CODED_CLASSES = 20  # 0..K-1 whole numbers read as classes up to this K under `auto`
FEW_WHOLE_VALUES = 20  # whole-number targets with at most this many values get the --task hint
WRITTEN_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"  # as a CSV reader reads a number: no spaces, no "_"
NOT_FINITE = r"[+-]?(nan|inf|infinity)"
NUMBERS_WITH_STRAYS = 0.9  # a text column whose values are numbers but for this share is meant as numbers


def parse_class_weight(text: str | dict | None) -> str | dict:
    """none, balanced, or (from Python) scikit-learn's {class: weight}, each weight a positive
    number; a class left out weighs 1. Which classes there are, decide() checks."""
    if isinstance(text, Mapping):
        bad = next((w for w in text.values() if isinstance(w, bool) or not isinstance(w, numbers.Real)
                    or not 0 < w < math.inf), None)
        if bad is not None or not text:
            raise UserError(f"--class-weight's {{class: weight}} needs a positive number for each class, got {text!r}")
        return {plain_label(label): float(weight) for label, weight in text.items()}
    value = "none" if text is None else str(text).strip().lower()
    if not isinstance(text, str | None) or value not in CLASS_WEIGHTS:  # the dict is Python's only: named there
        dict_too = "" if isinstance(text, str) else " or a {class: weight} dict"
        raise UserError(f"--class-weight must be one of {', '.join(CLASS_WEIGHTS)}{dict_too}, got {text!r}")
    return value


def parse_task(text: str | None) -> str:
    """None is "auto" (not given); "" is no task, refused as any other unknown one."""
    choices = ["auto", *map(str, Kind)]
    value = "auto" if text is None else str(text).strip().lower()
    if not isinstance(text, str | None) or value not in choices:
        raise UserError(f"--task must be one of {', '.join(choices)}, got {text!r}")
    return value


def decide(column: pd.Series, target: str, asked: str = "auto", metric: str | None = None,
           class_weight: str | dict = "none") -> tuple[Task, np.ndarray, str | None]:
    """(the task, y, a line to show before training or None) from the target column: y holds
    numbers for regression, class codes 0..K-1 (as floats) for classes. Bad targets raise
    UserError with one line, before anything trains."""
    asked = parse_task(asked)
    if pd.api.types.is_datetime64_any_dtype(column) or any(isinstance(v, datetime.date) for v in column.head(100)) \
            or (asked == "auto" and not pd.api.types.is_numeric_dtype(column) and date_parts.is_date(column)):
        raise UserError(f"target column {target!r} holds dates: predict a number made from them (days since a "
                        "start, the year) or a class (the weekday); --task multiclass takes each date text as a class")
    ordered = list(column.cat.categories) if isinstance(column.dtype, pd.CategoricalDtype) \
        and column.cat.ordered else None  # pd.cut's bands, "low" < "high": the classes keep that order
    if not all(isinstance(v, str | int | float | bool | np.generic) for v in pd.unique(column.dropna())):
        column = column.astype(object).map(as_text, na_action="ignore")  # pd.cut's intervals: classes by their text
        ordered = [as_text(c) for c in ordered] if ordered else None
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    bad = column.isna().to_numpy().copy()
    if numeric:
        bad |= np.isinf(column.to_numpy(dtype=np.float64, na_value=np.nan))
    else:  # "nan", "inf" written as text (a JSON file's strings) are missing and infinite values too
        bad |= column.map(lambda v: isinstance(v, str) and re.fullmatch(NOT_FINITE, v.strip(), re.IGNORECASE)
                          is not None).to_numpy(dtype=bool)
    if bad.any():
        raise UserError(f"target column {target!r} has {int(bad.sum())} missing or infinite value(s) "
                        f"(first at row {int(np.argmax(bad))})")
    distinct = pd.unique(column)
    if (numbers := _text_as_numbers(column, distinct, asked, target)) is not None:
        column, numeric, distinct = numbers, True, pd.unique(numbers)
    kind, line = _kind(asked, numeric, column, distinct, target)
    if kind == Kind.REGRESSION:
        if not numeric and all(_is_number(v) for v in distinct):  # a category of numbers, asked as numbers
            column, numeric = pd.Series(column.astype(object).map(float), index=column.index, dtype=np.float64), True
        if not numeric:
            words = [v for v in column if not _is_number(v)]
            how = ("--task regression needs numbers" if asked == Kind.REGRESSION else
                   f"{len(words)} of its {len(column)} values are text; clean them to search it as numbers, "
                   "or --task multiclass treats each value as a class")
            raise UserError(f"target column {target!r} is not numeric (e.g. {words[0]!r}): {how}")
        y = column.to_numpy(dtype=np.float64)
        if np.all(y == y[0]):
            raise UserError(f"target column {target!r} is constant ({y[0]:g}): there is nothing to learn")
        if class_weight != "none":
            raise UserError(f"--class-weight {class_weight} weighs classes; target column {target!r} is searched "
                            f"as numbers (regression)")
        task = Task(Kind.REGRESSION, (), _metric(Kind.REGRESSION, metric), counts=is_count(y))
        if Objective.POISSON in task.objectives:  # said: the leaderboard's objectives, and a model without SHAP, follow
            line = (line or f"task: regression of {target!r}") + ("; a count: the boosting families search the Poisson "
                                                                  "deviance beside squared error")
        return task, y, line
    classes = tuple(sorted(distinct, key=_order if ordered is None else ordered.index))
    if len(classes) < 2:
        raise UserError(f"target column {target!r} has one class only ({plain_label(classes[0])!r}): "
                        f"there is nothing to learn")
    if kind == Kind.BINARY and len(classes) != 2:
        raise UserError(f"--task binary needs two classes; target column {target!r} has {len(classes)}")
    if len(classes) > MAX_CLASSES:
        raise UserError(f"target column {target!r} has {len(classes)} classes, more than {MAX_CLASSES}: "
                        f"if they are numbers, use --task regression")
    written = [as_text(c) for c in classes]  # how predict names each class's probability column
    if len(set(written)) < len(written):
        same = next(w for w in written if written.count(w) > 1)
        raise UserError(f"target column {target!r} holds {same!r} both as a number and as text: two classes "
                        "that read the same; make the column one type")
    labels = tuple(plain_label(c) for c in classes)
    task = Task(kind, labels, _metric(kind, metric), _per_class(class_weight, labels, target))
    y = task.encode(column)  # each row's class code
    line = line or f"task: {kind} classification of {target!r} ({_class_summary(task)})"
    return task, y, line + (_codes_note(column) + counts_hint(task) if asked == "auto" else "")


def is_count(y: np.ndarray) -> bool:
    """Whether a number target reads as a count of events (runs batted in, visits, claims): whole
    numbers, none negative, the smallest 0 or 1 (a year, or a price in whole units, starts far
    from them), at least three values (two are a yes/no), and a right tail: the largest more than
    twice the median (a 1-5 or 1-10 rating's top lies within twice its middle)."""
    distinct = np.unique(y)
    return bool(len(distinct) >= 3 and 0 <= distinct[0] <= 1 and _whole(distinct)
                and distinct[-1] > 2 * np.median(y))


def counts_hint(task: Task) -> str:
    """Where classes are the whole numbers 0..K-1 (K >= 3), which `auto` reads as label codes: that
    a count reads so too, and is numbers under --task regression (a Poisson count 0..7 was refused
    as eight classes, "class 7 has 1 row(s)", with no word of it); "" for any other classes."""
    if len(task.classes) < 3 or list(task.classes) != list(range(len(task.classes))):
        return ""
    return ("; the target's values are 0 to K-1, read as classes: if they are counts, --task regression reads "
            "them as numbers")


def _per_class(weights: str | dict, classes: tuple, target: str) -> str | tuple[float, ...]:
    """{class: weight} as each class's weight in the order of `classes` (1 where left out)."""
    if not isinstance(weights, dict):
        return weights
    unknown = [label for label in weights if label not in classes]
    if unknown:
        shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise UserError(f"--class-weight names {unknown[0]!r}, which is not a class of target column {target!r} "
                        f"({len(classes)} classes: {shown})")
    return tuple(float(weights.get(c, 1.0)) for c in classes)


def _codes_note(column: pd.Series) -> str:
    """Why numbers written as text are classes, where codes decided it (one "05" among them does)."""
    written = pd.Series(pd.unique(column.dropna())).astype(str)
    if not (written.map(_is_written_number).all() and has_codes(written)):
        return ""
    code = written[written.str.fullmatch(CODE)].iloc[0]
    return f"; its values are codes ({code!r} is written with a leading zero): --task regression reads them as numbers"


def classes_alike(task: Task) -> list[str]:
    """A warning where classes differ only in case or spaces ("Yes", " YES "): likely one class
    written two ways, which the search keeps apart; every such group named."""
    groups: dict[str, list[str]] = {}
    for text in (as_text(c) for c in task.classes):
        groups.setdefault(" ".join(text.split()).casefold(), []).append(text)
    alike = ["; ".join(" and ".join(repr(t) for t in group) for group in groups.values() if len(group) > 1)]
    return [f"classes {alike[0]} differ only in case or spaces: one class written two ways? (the search keeps "
            "them apart; clean the target column to join them)"] if alike[0] else []


def _text_as_numbers(column: pd.Series, distinct: np.ndarray, asked: str, target: str) -> pd.Series | None:
    """A text column that is numbers throughout as those numbers, where they are to be searched
    as numbers (see the top); None otherwise."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column) \
            or isinstance(column.dtype, pd.CategoricalDtype) or asked not in ("auto", Kind.REGRESSION) \
            or not all(_is_written_number(v) for v in distinct):
        return None  # a category column's values are classes, whatever they hold
    numbers = column.map(float).astype(np.float64)
    if asked == Kind.REGRESSION:
        return numbers
    apart = numbers.nunique() == len(distinct) and not has_codes(column)  # "007", "01": codes, not numbers
    as_numbers = _kind(asked, True, numbers, pd.unique(numbers), target)[0]
    return numbers if apart and as_numbers == Kind.REGRESSION else None


def _kind(asked: str, numeric: bool, column: pd.Series, distinct: np.ndarray, target: str) -> tuple[Kind, str | None]:
    if asked != "auto":
        return Kind(asked), None
    if not numeric and len(distinct) > 2 and NUMBERS_WITH_STRAYS <= np.mean([_is_number(v) for v in column]) < 1:
        return Kind.REGRESSION, None  # numbers with a stray text: refused as "not numeric", naming it
    if not numeric:
        return (Kind.BINARY if len(distinct) == 2 else Kind.MULTICLASS), None
    if len(distinct) == 2:
        return Kind.BINARY, None
    whole = _whole(distinct)
    if whole and 3 <= len(distinct) <= MAX_CODED_CLASSES and set(np.asarray(distinct, dtype=np.int64)) == set(
            range(len(distinct))):
        return Kind.MULTICLASS, None
    if whole and 3 <= len(distinct) <= FEW_WHOLE_VALUES:
        return Kind.REGRESSION, (f"task: regression of {target!r} ({len(distinct)} whole values); "
                                 f"--task multiclass treats them as classes")
    return Kind.REGRESSION, None


def _metric(kind: Kind, name: str | None) -> str:
    choices = METRICS[kind]
    if name is None:
        return next(iter(choices))
    name = str(name).strip().lower().replace("-", "_")  # as --class-weight reads its value: ROC_AUC, roc-auc
    if name not in choices:
        raise UserError(f"--metric {name!r} is not a {kind} metric (choose from {', '.join(choices)})")
    return name


def _whole(distinct: np.ndarray) -> bool:
    """Whether numbers are all whole (finite, no fraction)."""
    return bool(np.all(np.isfinite(distinct)) and np.all(np.asarray(distinct, dtype=np.float64) % 1 == 0))


def _order(value: Any) -> tuple:
    """Classes sort as numbers where they are numbers, else as text: 0 < 1 < 2, 'no' < 'yes'."""
    return (0, float(value), "") if _is_number(value) else (1, 0.0, str(value))


def _is_written_number(value: object) -> bool:
    """A number, or text a CSV reader reads as one."""
    if isinstance(value, str):
        return bool(re.fullmatch(WRITTEN_NUMBER, value))
    return _is_number(value)


def _is_number(value: object) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _class_summary(task: Task) -> str:
    shown = ", ".join(repr(c) for c in task.classes[:5]) + (", ..." if len(task.classes) > 5 else "")
    return f"{len(task.classes)} classes: {shown}; searched by {task.metric.label}"
