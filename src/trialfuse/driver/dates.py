"""Date and time columns as numbers a model can split on.

A date is neither a category (every day is a new level) nor an identifier (its text differs on
every row, yet it orders and groups them), so it becomes what AutoGluon's datetime features
are: the day count since 1970 (the trend), and the year, month, day of the month, day of the
week and hour (the seasons and the week's rhythm). A part that does not vary on the search rows
(an hour of 0 on dates without a time) is dropped like any constant column. A column is a date
where pandas holds it as one (a datetime dtype, or Python dates: Parquet's DATE) or where
MOSTLY_DATES of its values are ISO 8601 text ("2013-01-01", "2013-01-01 05:40:00"; the others,
an "unknown" here and there, are missing, and counted in a warning); other spellings
("01/02/2013": January or February?) stay text, with a warning. A time is read at its own wall
clock, whatever its offset or zone, so a zone-aware column and the text a CSV writes of it give
the same parts.
"""
from __future__ import annotations

import datetime
import warnings

import numpy as np
import pandas as pd

PARTS = ("year", "month", "day", "day_of_week", "hour")  # pandas' names; the day count is the column's own name
SAMPLE = 1000  # values tried as dates before the whole column is parsed
MOSTLY_DATES = 0.95  # a text column this much ISO dates is dates, its other values missing (and said)
_EPOCH = pd.Timestamp("1970-01-01")


def is_date(column: pd.Series) -> bool:
    """Whether `column` holds dates: a datetime dtype, Python dates, or text of which MOSTLY_DATES
    is ISO 8601 (a few values are tried first, then all of them)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    present = column.dropna()
    if present.empty:
        return False
    if all(isinstance(v, datetime.date) for v in present.iloc[:SAMPLE]):  # Python dates and datetimes
        return bool(all(isinstance(v, datetime.date) for v in present))
    sample = _text_sample(present)
    return sample is not None and bool(_parsed(sample).notna().mean() >= MOSTLY_DATES
                                       and _parsed(present).notna().mean() >= MOSTLY_DATES)


def looks_like_dates(column: pd.Series) -> str | None:
    """For a text column not read as dates: an example value where its values read as dates in
    another spelling than ISO 8601 ("05/01/2020", "Jan 05, 2020"), which stay text; else None."""
    sample = _text_sample(column.dropna())
    if sample is None or sample.str.contains(r"(?<!\d)\d{4}(?!\d)").mean() < MOSTLY_DATES:  # a year in each
        return None
    with warnings.catch_warnings():  # pandas says it guesses each value's format: that is the point here
        warnings.simplefilter("ignore")
        read = pd.to_datetime(sample, errors="coerce", format="mixed")
    return str(sample.iloc[0]) if read.notna().mean() >= MOSTLY_DATES else None


def _text_sample(present: pd.Series) -> pd.Series | None:
    """The first SAMPLE present values where they are text and none is a plain number ("2013" is
    a number, not a date); else None."""
    sample = present.iloc[:SAMPLE]
    if sample.empty or not all(isinstance(v, str) for v in sample) or sample.str.fullmatch(r"[+-]?\d+(\.\d*)?").any():
        return None
    return sample


def part_names(column: str) -> list[str]:
    """The features a date column becomes, in order: the day count (the column's own name), then
    `column.year` and the other PARTS."""
    return [column, *(f"{column}.{part}" for part in PARTS)]


def parts(column: pd.Series) -> pd.DataFrame:
    """The column's date features (part_names), float; a missing or unreadable date is missing
    in each."""
    stamps = _parsed(column)
    days = (stamps - _EPOCH) / pd.Timedelta(days=1)
    values = {column.name: days.to_numpy(dtype=np.float64, na_value=np.nan)}
    for part in PARTS:
        values[f"{column.name}.{part}"] = getattr(stamps.dt, part).to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(values, index=column.index)


def expand(frame: pd.DataFrame, columns: list[str], unreadable: dict[str, int] | None = None) -> pd.DataFrame:
    """`frame` with each date column in `columns` replaced by its features, where it is present;
    how many values each has that are there but read as no date goes into `unreadable`, if given."""
    for name in columns:
        if name in frame.columns:
            position = frame.columns.get_loc(name)
            derived = parts(frame[name])
            if unreadable is not None and (count := int((derived[name].isna() & frame[name].notna()).sum())):
                unreadable[name] = count
            frame = pd.concat([frame.iloc[:, :position], derived, frame.iloc[:, position + 1:]], axis=1)
    return frame


# an ISO 8601 time's offset from UTC (after a time, never a date's "-31"), dropped: the wall clock counts
OFFSET = r"^(.*\d:\d\d[:.\d]*)(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _parsed(column: pd.Series) -> pd.Series:
    """The column as naive timestamps at their own wall-clock time (the hour and day a person
    there saw): a zone-aware one's local time, text as ISO 8601 with any offset dropped, Python
    dates as they are; anything else missing: a number is no date (pandas reads one as epoch
    nanoseconds: epoch microseconds given for a date column put every row in January 1970). Any
    resolution pandas gives (a 9999-12-31 sentinel needs microseconds)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = column
    elif column.map(lambda v: isinstance(v, str), na_action="ignore").all():
        text = column.astype("string").str.replace(OFFSET, r"\1", regex=True)
        stamps = pd.to_datetime(text, errors="coerce", format="ISO8601")
    else:  # Python dates or datetimes, each at its own wall clock
        stamps = pd.to_datetime(column.map(lambda v: v.replace(tzinfo=None) if isinstance(v, datetime.datetime)
                                           else v if isinstance(v, (datetime.date, str)) else None,
                                           na_action="ignore"), errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_localize(None)
    return stamps
