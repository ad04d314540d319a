"""Read a user's table and turn it into a float feature matrix and a target vector.

Everything that can be wrong with the data is found here, before any training starts,
and reported as one `UserError` line. String columns become ordinal codes (the mapping is
kept so `predict` encodes new tables the same way), date columns their parts (driver.dates);
missing feature values stay NaN (trees take them natively, the NN imputes from its training fold).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trialfuse.driver import dates as date_parts
from trialfuse.driver.data_checks import check_ranges, far_features, far_out_targets, target_again
from trialfuse.driver.table_files import READ_WARNINGS, as_text, read_frame
from trialfuse.driver.target import classes_alike, decide
from trialfuse.errors import UserError
from trialfuse.task import Task


@dataclass
class Table:
    """A validated table: X [rows, features] float64 (NaN = missing), y [rows] (numbers, or
    class codes 0..K-1 whose labels the task keeps)."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target: str
    task: Task = field(default_factory=Task)
    task_line: str | None = None  # what was decided about the task, to say before training
    categories: dict[str, list[str]] = field(default_factory=dict)  # column -> code order
    dates: list[str] = field(default_factory=list)  # the table's date columns, each now its parts' features
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it is unused
    identifiers: dict[str, str] = field(default_factory=dict)  # the dropped columns that only name rows, and why
    warnings: list[str] = field(default_factory=list)  # what the user should know about the encoding

    @property
    def rows(self) -> int:
        return len(self.y)

    @property
    def dropped_to_say(self) -> dict[str, str]:
        """The dropped columns a user should hear of: not the identifiers (said on their own), nor
        a used date's part that does not vary (its hour where it holds no times: not the user's column)."""
        made = {part for name in self.dates for part in date_parts.part_names(name)}
        return {name: why for name, why in self.dropped.items() if name not in self.identifiers and name not in made}

    @property
    def category_columns(self) -> list[int]:
        """The columns of X that hold a category's codes (the families that split on categories
        natively read them as such)."""
        return [i for i, name in enumerate(self.feature_names) if name in self.categories]


def load_table(path: str | Path | pd.DataFrame, target: str | None, keep: list[str] | None = None,
               search_rows: Callable[[Task, np.ndarray], np.ndarray] | None = None, task: str = "auto",
               metric: str | None = None, class_weight: str = "none") -> Table:
    """Read, validate and encode a table for training; the target decides the task (`task`:
    auto, or what the user asked; see trialfuse.task). Columns that only name rows (a row
    index, a per-row unique text) are dropped, unless named in `keep`. `search_rows(task, y)`
    gives the rows that decide the encoding (category levels, constant columns): the sealed
    holdout's values must not shape what is trained; by default, every row."""
    frame, target = read_frame(path, target)
    read_warnings = frame.attrs.get(READ_WARNINGS, [])
    source = "the DataFrame" if isinstance(path, pd.DataFrame) else str(path)
    if target is None:
        raise UserError("--target is required: name the column to predict")
    if len(frame) == 0:
        raise UserError(f"table {source} has no rows")
    frame = _unique_names(_unique_names(frame, source, "").rename(columns=str), source, "as text")
    target = str(target)  # fit(frame, 5) names the column 5 as well as "5"
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:8])) + (", ..." if frame.shape[1] > 8 else "")
        raise UserError(f"target column {target!r} not found in {source} (columns: {shown})")
    decided, y, task_line = decide(frame[target], target, task, metric, class_weight)
    features = frame.drop(columns=[target])
    unknown = [k for k in keep or [] if k not in features.columns]
    if unknown:
        raise UserError(f"--keep-columns names {', '.join(map(repr, unknown))}, not a feature column of {source}")
    dates = [name for name in features.columns if date_parts.is_date(features[name])]
    identifiers = {name: why for name in features.columns
                   if name not in (keep or []) and name not in dates and (why := _identifier(features[name], name))}
    unread: dict[str, int] = {}
    spelled = {name: example for name in features.columns if name not in dates
               and not pd.api.types.is_numeric_dtype(features[name])
               and (example := date_parts.looks_like_dates(features[name]))}
    features = _unique_names(date_parts.expand(features.drop(columns=list(identifiers)), dates, unread), source,
                             "beside a date column's parts (driver.dates.part_names)")
    deciding = search_rows(decided, y) if search_rows else np.arange(len(y))
    X, names, categories, dropped = _encode_training_features(features, deciding)
    check_ranges(X, names, y, decided, source)
    warnings = read_warnings + classes_alike(decided) + [_text_order_warning(n, features[n]) for n in categories]
    warnings += target_again(X, names, y, decided, deciding) + far_out_targets(y[deciding], decided)
    warnings += far_features(X[deciding], names, [names.index(name) for name in categories])
    warnings += [f"column {name!r}: {count} value(s) are not ISO dates, taken as missing"
                 for name, count in unread.items()]
    warnings += [f"column {name!r} looks like dates written another way ({example!r}), not read as dates: write "
                 "them as ISO 8601 (2020-01-31) to use them as dates" for name, example in spelled.items()]
    counted = [n for n in features.columns if n in names and n not in dates and n not in (keep or [])]
    warnings += _counter_warning(features[counted])  # a daily date's day count steps by one too
    dropped = {**identifiers, **dropped}
    if not names:
        why = "; ".join(f"{c}: {r}" for c, r in dropped.items()) or "the table has only the target column"
        raise UserError(f"no usable feature columns in {source} ({why})")
    return Table(X=X, y=y, feature_names=names, target=target, task=decided, task_line=task_line,
                 categories=categories, dates=[d for d in dates if set(date_parts.part_names(d)) & set(names)],
                 dropped=dropped, identifiers=identifiers, warnings=[w for w in warnings if w])


def _unique_names(frame: pd.DataFrame, source: str, how: str) -> pd.DataFrame:
    """`frame`, refused where two of its columns share a name `how` (a model's features are found
    by name, at predict time too)."""
    twice = sorted(set(frame.columns[frame.columns.duplicated()]))
    if twice:
        raise UserError(f"{source}: column name(s) {', '.join(map(repr, twice))} appear twice{' ' * bool(how)}{how}; "
                        "rename one")
    return frame


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _encode_training_features(features: pd.DataFrame, deciding: np.ndarray):
    """Every row encoded; levels and constant columns judged on the `deciding` rows alone
    (a level seen only elsewhere is missing, as an unseen level is at predict time)."""
    columns, names, categories, dropped = [], [], {}, {}
    for name in features.columns:
        column = features[name]
        key = str(name)
        if _is_categorical(column):
            levels = sorted({as_text(v) for v in column.iloc[deciding].dropna()})
            values = _codes(column, levels)
            categories[key] = levels
        else:
            values = _numeric(column)
        observed = values[deciding][~np.isnan(values[deciding])]
        if observed.size == 0:
            dropped[key] = "all values missing"
        elif np.all(observed == observed[0]):
            dropped[key] = "constant"
        else:
            columns.append(values)
            names.append(key)
    categories = {k: v for k, v in categories.items() if k in names}
    X = np.column_stack(columns) if columns else np.empty((len(features), 0))
    return X, names, categories, dropped


IDENTIFIER_MIN_ROWS = 20  # fewer rows prove nothing about a column
IDENTIFIER_DISTINCT_SHARE = 0.95  # a text column this distinct names rows rather than groups them


def _identifier(column: pd.Series, name: str) -> str | None:
    """Why `column` only names rows, or None. A row index (pandas writes one as "Unnamed: 0")
    orders the rows, and a table stored in an order related to the target leaks it through
    that column; a text unique per row gives codes in alphabetical order: noise."""
    if len(column) < IDENTIFIER_MIN_ROWS or pd.api.types.is_bool_dtype(column):
        return None
    if _is_categorical(column):
        present = column.dropna().map(str)
        if len(present) >= IDENTIFIER_DISTINCT_SHARE * len(column) \
                and present.nunique() >= IDENTIFIER_DISTINCT_SHARE * len(present):
            return "an identifier: its text differs on (almost) every row (--keep-columns keeps it)"
        return None
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(values).any() or not np.all(values == np.round(values)):
        return None
    if name == "Unnamed: 0" and len(np.unique(values)) == len(values):  # first, a number per row: pandas' index
        return "a row index: an unnamed integer column, as pandas writes its index (--keep-columns keeps it)"
    if _counts_rows(values) and ROW_NUMBER_NAME.fullmatch(name.strip()):
        return "a row index: its values are the row numbers plus a constant (--keep-columns keeps it)"
    return None


# Names a column of row numbers goes by; a counter named otherwise ("day", "week") may be the
# signal (a trend), so it stays a feature, with a warning (_counter_warning).
ROW_NUMBER_NAME = re.compile(
    r"(?i:#|n|s\.? ?no\.?|sl.?no|no\.?|nr|num|number|idx|index|level_0|key|id|.*[_ .-]id"  # level_0: reset_index's
    r"|row.?(id|no|nr|num|number|idx|index)?)"
    r"|.*[a-z](Id|ID)")  # camelCase: PassengerId, CustomerID, userId


def _counts_rows(values: np.ndarray) -> bool:
    """Whole numbers that step by one from row to row: the row numbers plus a constant."""
    return len(values) >= IDENTIFIER_MIN_ROWS and bool(np.all(values == np.round(values))) \
        and bool(np.all(np.diff(values) == 1))


def _counter_warning(features: pd.DataFrame) -> list[str]:
    """A named counter kept as a feature: where the rows were stored in target order, it leaks it."""
    said = []
    for name in features.columns:
        column = features[name]
        if _is_categorical(column) or pd.api.types.is_bool_dtype(column):
            continue
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isnan(values).any() and _counts_rows(values):
            said.append(f"column {name!r} counts the rows ({values[0]:g}, {values[1]:g}, ...): used as a feature; "
                        "if it only numbers them, leave it out of the table (rows stored in target order leak "
                        "through it)")
    return said


def _is_categorical(column: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _numeric(column: pd.Series) -> np.ndarray:
    values = column.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    values[~np.isfinite(values)] = np.nan  # an infinite feature value is as good as missing
    return values


def _codes(column: pd.Series, levels: list[str]) -> np.ndarray:
    index = {level: float(code) for code, level in enumerate(levels)}
    return np.array([np.nan if pd.isna(v) else index.get(as_text(v), np.nan) for v in column], dtype=np.float64)


MOSTLY_NUMERIC_SHARE = 0.9  # a text column whose levels are at least this much numbers is probably a number


def _text_order_warning(name: str, column: pd.Series) -> str | None:
    """A column of numbers made text by a few stray tokens (MOSTLY_NUMERIC_SHARE of its rows are
    numbers): its codes follow text order. A column of the category dtype was made so on purpose."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return None
    counts = column.value_counts(dropna=True)  # per distinct value: a long column is read once
    texts = [as_text(v) for v in counts.index]
    word_rows = [count for text, count in zip(texts, counts, strict=True) if not _is_number(text)]
    rows, words, levels = int(counts.sum()), int(sum(word_rows)), len(set(texts))
    if levels < 3 or not words or words > (1 - MOSTLY_NUMERIC_SHARE) * rows:
        return None
    shown = ", ".join(repr(t) for t in [t for t in texts if not _is_number(t)][:3])  # the commonest first
    return (f"column {name!r} is read as text because {words} of its {rows} values are not numbers "
            f"({shown}): its {levels} levels are coded in text order (\"10\" before \"9\"); clean those values to "
            "make it a number")


def encode_features(frame: pd.DataFrame, feature_names: list[str], categories: dict[str, list[str]],
                    unseen: dict[str, int] | None = None, dates: list[str] | None = None) -> np.ndarray:
    """Encode a new table exactly as the training table was; unseen categories become NaN
    (counted per column into `unseen`, if given, as are infinite numbers); `dates`, the training
    table's date columns, become their parts again (a value read as no date counted into `unseen`
    under its column)."""
    frame = frame.rename(columns=str)
    derived = {part: column for column in dates or [] for part in date_parts.part_names(column)}
    needed = list(dict.fromkeys(derived.get(n, n) for n in feature_names))  # a date column, once
    missing = [n for n in needed if n not in frame.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise UserError(f"table lacks {len(missing)} feature column(s) the model needs: {shown}")
    _unique_names(frame.loc[:, frame.columns.isin(needed)], "the table", "")  # a name twice read as "not numeric"
    frame = date_parts.expand(frame, dates or [], unseen)
    out = np.empty((len(frame), len(feature_names)), dtype=np.float64)
    for j, name in enumerate(feature_names):
        column = frame[name]
        if name in categories:
            out[:, j] = _codes(column, categories[name])
            if unseen is not None and (count := int((np.isnan(out[:, j]) & column.notna().to_numpy()).sum())):
                unseen[name] = count
        elif _is_categorical(column):
            raise UserError(f"feature column {name!r} was numeric in training but is not numeric here")
        else:
            out[:, j] = _numeric(column)
            if unseen is not None and (count := int(np.isinf(column.to_numpy(np.float64, na_value=np.nan)).sum())):
                unseen[name] = count  # an infinite value, read as missing
    return out
