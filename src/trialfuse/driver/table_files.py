"""Reading a table, from a file in one of FORMATS or a DataFrame, the same way for training
and for predict.

What a format leaves open is settled here, so a model sees the columns the user wrote:
- a CSV's separator: a comma, or the semicolon, tab or bar its header is split by
  (spreadsheets in many locales save CSV with semicolons; read with commas, the whole table
  would be one column named "a;b;c");
- a CSV's encoding: UTF-8, else Windows' cp1252, else Latin-1 (which reads any byte), as a
  file saved by an older spreadsheet is; UTF-16 where its byte order mark says so. A UTF-8
  file with a few bad bytes (one pasted from elsewhere) stays UTF-8, each bad byte read as
  U+FFFD and counted in a warning (`READ_WARNINGS` in the frame's attrs): read as cp1252,
  every accented letter of it would turn into two others ("é" into "Ã©"), silently;
- a CSV split by semicolons (tabs, bars) writes decimals with a comma: "12,5" is a number;
- a name twice in a CSV's header is refused: pandas would rename the second "a.1" and train
  on a column the user never named;
- numbers held as Python objects (a database fetch, `astype(object)`, a row built from a dict
  with None for a missing value) are the numbers they are, not text;
- a CSV's target column that holds codes, whole numbers written with a leading zero ("007",
  "01"), keeps them as written: read as numbers, "007" and "7" would be one class and "01"
  would come back from predict as 1.
"""
from __future__ import annotations

import csv
import decimal
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from trialfuse.errors import UserError

FORMATS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet", ".npz": "NPZ",
           ".json": "JSON", ".jsonl": "JSON lines"}
NPZ_TARGET = "y"
SEPARATORS = ",;\t|"  # in order of preference where a header holds as many of two
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # utf-8-sig: UTF-8, its byte order mark dropped where there is one
BYTE_ORDER_MARKS = {b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}  # Excel's "Unicode text": only UTF-16 reads it
DECIMAL_COMMA = r"[+-]?\d+(,\d+)?"
CODE = r"[+-]?0\d+"  # a whole number written with a leading zero: an identifier, not an amount
READ_WARNINGS = "trialfuse_read_warnings"  # the frame's attrs key: what reading it found, for the run to say
SNIFFED_CHARACTERS = 65_536  # of a CSV read to find its header's separator
NUMBER_TYPES = (int, float, decimal.Decimal, np.integer, np.floating)
NESTED_TYPES = (list, tuple, set, dict, np.ndarray)  # a Parquet list column, a JSON array or object in a cell


def read_frame(path: str | Path | pd.DataFrame, target: str | None = None,
               text_columns: list[str] | None = None, only: set[str] | None = None,
               date_columns: list[str] | None = None) -> tuple[pd.DataFrame, str | None]:
    """Read any supported file into a DataFrame (a DataFrame is taken as it is); NPZ's `y`
    array is named `target`. `text_columns` are read as text where the format guesses types
    (CSV): a category column whose values in this file all look like numbers ("7", "02134")
    keeps them as written. `only`: the columns whose values matter (see numbers_as_numbers).
    `date_columns`: a model's date columns, which JSON holds as epoch times (`to_json` writes
    milliseconds), read as dates."""
    if isinstance(path, pd.DataFrame):
        frame = numbers_as_numbers(path.copy(), target, text_columns, only)
        for name in text_columns or []:  # numbers in a category column read as the text they were trained as
            if name in frame.columns and pd.api.types.is_numeric_dtype(frame[name]):
                frame[name] = frame[name].map(as_text, na_action="ignore")
        return frame, target
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    if path.is_dir():
        raise UserError(f"data path is a directory, not a table: {path}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise UserError(f"unknown table format {suffix or '(no extension)'!r} for {path} (expected one of {known})")
    kind = FORMATS[suffix]
    try:
        if kind == "CSV":
            frame = _read_csv(path, text_columns, target)
        elif kind == "Parquet":
            frame = pd.read_parquet(path)
        elif kind in ("JSON", "JSON lines"):
            frame = _epoch_dates(pd.read_json(path, orient="records", lines=kind == "JSON lines", precise_float=True),
                                 date_columns)  # precise: pandas' fast parse was a bit off on 87% of floats
        else:
            frame, target = _read_npz(path, target)
    except UserError:
        raise
    except pd.errors.EmptyDataError:
        raise UserError(f"table {path} is empty") from None
    except Exception as exc:  # any parser's complaint means the same thing to the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {path} as {kind}: {reason}") from None
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"cannot read {path} as {kind}: expected a list of records")
    return numbers_as_numbers(frame, target, text_columns, only), target


def _epoch_dates(frame: pd.DataFrame, date_columns: list[str] | None) -> pd.DataFrame:
    """A JSON file's numbers in a model's date columns as the epoch milliseconds `to_json` writes
    dates as (read as numbers, they are no dates: see dates._parsed)."""
    for name in date_columns or []:
        if name in frame.columns and pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = pd.to_datetime(frame[name], unit="ms", errors="coerce")
    return frame


def numbers_as_numbers(frame: pd.DataFrame, target: str | None = None, text_columns: list[str] | None = None,
                       only: set[str] | None = None) -> pd.DataFrame:
    """`frame` with each column of Python numbers (object dtype; None or NaN where missing) as
    floats, and of True and False with a missing value (a CSV's blank cell) as 1, 0 and NaN, as
    a bool column is read (not the `target`: its classes stay True and False; not `text_columns`,
    a model's category columns, as an older version coded such a column); durations as seconds;
    a column with any text stays as it is. A cell holding a list or a mapping, and complex
    numbers, are refused. `only`: the columns to look at (a model's features), if not all."""
    for j in range(frame.shape[1]):
        column, name = frame.iloc[:, j], frame.columns[j]
        if only is not None and str(name) not in only:
            continue
        if str(name) in (text_columns or []) and not pd.api.types.is_numeric_dtype(column):
            continue  # read as the text it was trained as
        if pd.api.types.is_timedelta64_dtype(column):
            frame.isetitem(j, column.dt.total_seconds().astype(np.float64))
        elif pd.api.types.is_complex_dtype(column):
            raise UserError(f"column {name!r} holds complex numbers; give its real and imaginary parts as two columns")
        elif column.dtype == object:
            present = column.dropna()
            nested = next((v for v in present if isinstance(v, NESTED_TYPES)), None)
            if nested is not None:
                raise UserError(f"column {name!r} holds a {type(nested).__name__} in a cell (e.g. {str(nested)[:40]}):"
                                " one value a cell; spread its items into columns of their own")
            if len(present) and str(name) != str(target) and all(isinstance(v, bool | np.bool_) for v in present):
                frame.isetitem(j, column.map(float, na_action="ignore").astype(np.float64))
            elif all(isinstance(v, NUMBER_TYPES) and not isinstance(v, bool) for v in present):
                frame.isetitem(j, pd.to_numeric(column).astype(np.float64))
    return frame


def has_codes(texts: pd.Series) -> bool:
    """Whether text values hold a code (CODE), which read as a number would lose its spelling."""
    present = texts.dropna()
    return bool(len(present)) and bool(present.astype(str).str.fullmatch(CODE).any())


def _read_csv(path: Path, text_columns: list[str] | None, target: str | None = None) -> pd.DataFrame:
    """The CSV with its own separator and encoding (see the top); a name twice in its header is
    refused; the `target` column as written where it holds codes (has_codes)."""
    with path.open("rb") as handle:
        start = handle.read(4)
    marked = next((encoding for mark, encoding in BYTE_ORDER_MARKS.items() if start.startswith(mark)), None)
    for encoding in [marked] if marked else ENCODINGS:  # Latin-1, the last, reads any byte
        try:
            return _read_csv_as(path, encoding, text_columns, target)
        except UnicodeDecodeError:
            if encoding == ENCODINGS[0] and (bad_bytes := _bad_bytes_in_utf8(path)):
                return _read_csv_as(path, encoding, text_columns, target, bad_bytes)
    raise UserError(f"{path}: its first bytes mark it {marked}, but it does not read as {marked}")  # Latin-1 reads all


def _read_csv_as(path: Path, encoding: str, text_columns: list[str] | None, target: str | None,
                 bad_bytes: int = 0) -> pd.DataFrame:
    """The CSV read in `encoding`; where `bad_bytes` is not 0, those bytes read as U+FFFD, with a warning."""
    errors = "replace" if bad_bytes else "strict"
    separator, skip, names = _header(path, encoding, errors)
    read = {"sep": separator, "encoding": encoding, "skiprows": skip, "encoding_errors": errors}
    frame = pd.read_csv(path, **read, dtype={c: str for c in text_columns} if text_columns else None)
    if target in names and target not in (text_columns or []) and _whole_numbers(frame[target]):
        written = pd.read_csv(path, **read, usecols=[target], dtype=str)[target]  # one column: a tenth of the time
        frame[target] = written if has_codes(written) else frame[target]
    twice = sorted({name for name in names if name and names.count(name) > 1})
    if twice:
        raise UserError(f"{path}: column name(s) {', '.join(map(repr, twice))} appear twice in its header; rename one")
    if len(frame.columns) and isinstance(frame.columns[0], str):  # a UTF-8 mark read in another encoding
        frame = frame.rename(columns={frame.columns[0]: frame.columns[0].removeprefix("\ufeff").removeprefix("ï»¿")})
    frame = frame if separator == "," else _decimal_commas(frame, text_columns or [])
    if bad_bytes:
        frame.attrs[READ_WARNINGS] = [f"{path}: {bad_bytes} byte(s) are not UTF-8 in a file that otherwise is; each "
                                      "is read as '\ufffd' (re-save the file as UTF-8 to keep those characters)"]
    return frame


def _whole_numbers(column: pd.Series) -> bool:
    """Whether a column read as numbers could have been codes: whole numbers (missing ones aside)."""
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return bool(np.all(np.mod(values[~np.isnan(values)], 1) == 0))


def _bad_bytes_in_utf8(path: Path) -> int:
    """How many bytes of a mostly UTF-8 file are not UTF-8; 0 for a clean UTF-8 file and for one
    in another encoding (where the bytes above ASCII are no valid UTF-8 more often than they are)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = len(text) - len(text.encode("ascii", errors="ignore")) - bad  # letters beyond ASCII that decoded
    return bad if 0 < bad < good else 0


def _header(path: Path, encoding: str, errors: str = "strict") -> tuple[str, int, list[str]]:
    """(the separator, the lines before the header to skip, the header's names): Excel's
    `sep=;` first line names the separator; else the one of SEPARATORS that splits the first
    record into the most names (a quoted name may hold a comma or a line break)."""
    with path.open(encoding=encoding, errors=errors, newline="") as handle:
        first = handle.readline()
        named = re.fullmatch(r"sep=(.)\s*", first.lstrip("\ufeff"))
        sample = ("" if named else first.lstrip("\ufeff")) + handle.read(SNIFFED_CHARACTERS)
    candidates = [named.group(1)] if named else list(SEPARATORS)
    records = {s: next((r for r in csv.reader(io.StringIO(sample), delimiter=s) if r), []) for s in candidates}
    separator = max(candidates, key=lambda s: len(records[s]))  # the first of the most: a comma on a tie
    return separator, int(bool(named)), records[separator]


def _decimal_commas(frame: pd.DataFrame, text_columns: list[str]) -> pd.DataFrame:
    """A CSV split by semicolons (or tabs, bars) writes decimals as its locale does, "12,5":
    a column of such numbers, read as text, is numbers."""
    for j, name in enumerate(frame.columns):
        column = frame.iloc[:, j]
        if name in text_columns or not pd.api.types.is_string_dtype(column):
            continue
        present = column.dropna().astype(str)
        if len(present) and present.str.fullmatch(DECIMAL_COMMA).all() and present.str.contains(",").any():
            frame.isetitem(j, pd.to_numeric(column.str.replace(",", ".", regex=False)).astype(np.float64))
    return frame


def as_text(value: object) -> str:
    """A value as a CSV would have written it: 7.0 as "7" (a category's level, a class's column
    name: a file whose column held only numbers reads them back as the text it was trained on)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _read_npz(path: Path, target: str | None) -> tuple[pd.DataFrame, str]:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("X", "y") if k not in data.files]
        if missing:
            raise UserError(f"NPZ file {path} lacks array(s) {', '.join(missing)} (needs X and y)")
        X, y = data["X"], data["y"]
        has_names = "feature_names" in data.files
    names = _npz_feature_names(path) if has_names else None
    if X.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
        raise UserError(f"NPZ file {path}: X and y must be numeric arrays, got {X.dtype} and {y.dtype}")
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise UserError(f"NPZ file {path}: X must be 2-D and y 1-D with the same rows, got {X.shape} and {y.shape}")
    names = names or [f"x{i}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise UserError(f"NPZ file {path}: {len(names)} feature_names for {X.shape[1]} columns of X")
    target = target or NPZ_TARGET
    if target in names:
        raise UserError(f"NPZ file {path}: target name {target!r} is also a feature name")
    frame = pd.DataFrame(X, columns=names)
    frame[target] = y
    return frame, target


def _npz_feature_names(path: Path) -> list[str]:
    """Names saved as a string array load without pickle; an object array (say, a pandas
    Index saved as is) needs it, and is read only for this one array of names."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return [str(n) for n in data["feature_names"]]
    except ValueError:
        with np.load(path, allow_pickle=True) as data:
            return [str(n) for n in data["feature_names"]]
