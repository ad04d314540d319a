"""Date columns become their parts (driver.dates), in training and again at predict time.
Before, a date column was dropped as "an identifier: its text differs on every row", and a
target that followed the month lost all of it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trialfuse.driver.dates import is_date, part_names, parts
from trialfuse.driver.table import encode_features, load_table
from trialfuse.errors import UserError


@pytest.mark.parametrize("column, expected", [
    (pd.Series(pd.date_range("2021-01-01", periods=3)), True),
    (pd.Series(pd.date_range("2021-01-01", periods=3, tz="Europe/Paris")), True),
    (pd.Series(["2013-01-01", None, "2013-01-02 05:40:00", "2013-01-03T23:10"]), True),
    (pd.Series(["2013", "2014"]), False),  # years as text are numbers, not dates
    (pd.Series(["01/02/2013", "03/04/2013"]), False),  # January or February: left as text
    (pd.Series(["2013-01-01", "soon"]), False),  # one value that is no date
    (pd.Series(["a", "b"]), False),
    (pd.Series([1.5, 2.5]), False),
    (pd.Series([None, None], dtype=object), False),
])
def test_what_reads_as_a_date(column, expected):
    assert is_date(column) is expected


def test_the_parts_are_the_day_count_and_the_calendars_fields():
    found = parts(pd.Series(["2013-01-01 05:30", "2024-02-29", None], name="when"))
    assert list(found.columns) == part_names("when") == ["when", "when.year", "when.month", "when.day",
                                                         "when.day_of_week", "when.hour"]
    assert found.iloc[0].tolist() == [15706 + 5.5 / 24, 2013, 1, 1, 1, 5]  # a Tuesday
    assert found.iloc[1].tolist() == [19782, 2024, 2, 29, 3, 0]
    assert found.iloc[2].isna().all()
    local = parts(pd.Series(pd.to_datetime(["2021-06-01 23:30"]).tz_localize("America/New_York"), name="t"))
    assert local["t.hour"].iloc[0] == 23  # the wall-clock hour where it happened, not UTC's


def frame_with_dates(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    when = pd.date_range("2020-01-01", periods=rows, freq="D")
    return pd.DataFrame({"x": rng.normal(size=rows), "when": when, "noted": when.strftime("%Y-%m-%d"),
                         "y": when.month + rng.normal(0, 0.1, rows)})


def test_a_table_uses_its_date_columns_and_drops_the_parts_that_never_change():
    table = load_table(frame_with_dates(), "y")
    assert "when" not in table.identifiers and "noted" not in table.identifiers
    assert table.dates == ["when", "noted"]
    assert "when.month" in table.feature_names and "noted.day_of_week" in table.feature_names
    assert "when.hour" not in table.feature_names and table.dropped["when.hour"] == "constant"  # dates, no times
    assert "when.hour" not in table.dropped_to_say  # a new user's find: each run warned of a column never written
    month = table.X[:, table.feature_names.index("when.month")]
    assert np.array_equal(month, frame_with_dates()["when"].dt.month.to_numpy(dtype=float))


def test_new_rows_are_encoded_as_training_did_whether_their_dates_are_text_or_timestamps():
    frame = frame_with_dates()
    table = load_table(frame, "y")
    rows = frame.drop(columns="y")
    as_text = rows.assign(when=rows["when"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
    as_stamps = rows.assign(noted=pd.to_datetime(rows["noted"]))
    for new in (rows, as_text, as_stamps):
        np.testing.assert_array_equal(encode_features(new, table.feature_names, table.categories, None, table.dates),
                                      table.X)
    with pytest.raises(UserError, match="lacks 1 feature column.*: when$"):  # the column, not each of its parts
        encode_features(rows.drop(columns="when"), table.feature_names, table.categories, None, table.dates)


def test_a_far_off_sentinel_date_is_a_date_not_a_crash():
    """pandas holds 9999-12-31 at microseconds; a cast to nanoseconds raised OutOfBoundsDatetime."""
    found = parts(pd.Series(["2013-01-01", "9999-12-31"], name="until"))
    assert found["until.year"].tolist() == [2013, 9999] and found["until.day"].tolist() == [1, 31]


def test_a_zone_aware_column_and_the_text_a_csv_writes_of_it_give_the_same_parts(tmp_path):
    """Both at the wall clock: summer and winter rows carry different offsets in the text (+02:00,
    +01:00), which read as UTC gave other hours, and a batch of summer rows alone another still."""
    stamps = pd.Series(pd.to_datetime(["2021-01-01 23:30", "2021-07-01 23:30"]).tz_localize("Europe/Paris"), name="t")
    stamps.to_frame().to_csv(tmp_path / "t.csv", index=False)
    text = pd.read_csv(tmp_path / "t.csv")["t"]
    assert is_date(text) and text.str.endswith("+01:00").iloc[0] and text.str.endswith("+02:00").iloc[1]
    pd.testing.assert_frame_equal(parts(text), parts(stamps))
    pd.testing.assert_frame_equal(parts(text.iloc[1:]), parts(stamps).iloc[1:])
    assert parts(stamps)["t.hour"].tolist() == [23, 23]


def test_python_dates_are_dates():
    """Parquet's DATE type reads as Python dates in an object column."""
    import datetime

    column = pd.Series([datetime.date(2020, 1, 2), None, datetime.date(2021, 3, 4)], name="d", dtype=object)
    assert is_date(column)
    assert parts(column)["d.month"].tolist()[::2] == [1, 3]


def test_two_columns_of_one_name_are_refused():
    """Column 0 and column "0" are one name as text; a model finds its features by name."""
    frame = pd.DataFrame({0: np.arange(30.0), "0": np.arange(30.0) % 4, "y": np.arange(30.0) % 3})
    with pytest.raises(UserError, match="'0' appear twice as text"):
        load_table(frame, "y")
    rng = np.random.default_rng(0)
    clash = pd.DataFrame({"when": pd.date_range("2020-01-01", periods=30).strftime("%Y-%m-%d"),
                          "when.month": rng.normal(size=30), "y": rng.normal(size=30)})
    with pytest.raises(UserError, match="'when.month' appear twice beside a date column's parts"):
        load_table(clash, "y")


def test_dates_that_new_rows_spell_otherwise_are_counted_and_said():
    """A predict table's date column with another spelling ("01/02/2020") or a typo: those values
    are missing in every part, and predict says how many, as it does for unseen categories."""
    from trialfuse.predict import read_as_trained

    frame = frame_with_dates()
    table = load_table(frame, "y")
    meta = {"target": "y", "feature_names": table.feature_names, "categories": table.categories,
            "dates": table.dates}
    rows = frame.drop(columns="y").head(4).assign(noted=["2020-01-01", "01/02/2020", "soon", None])
    said: list[str] = []
    _, X = read_as_trained(rows, meta, said.append)
    assert said == ["column 'noted': 2 value(s) not read as dates, treated as missing"]
    assert np.isnan(X[1:, table.feature_names.index("noted.month")]).all()


def test_numbers_where_dates_were_trained_are_said_and_a_json_files_epoch_dates_read_as_dates(tmp_path):
    """Epoch microseconds given for a date column read as nanoseconds: every date in January 1970
    and predictions off by 0.19, nothing said. `to_json` writes dates as epoch milliseconds, and
    a JSON file's date column is the model's: read as dates."""
    from trialfuse.predict import read_as_trained

    frame = frame_with_dates()
    table = load_table(frame, "y")
    meta = {"target": "y", "feature_names": table.feature_names, "categories": table.categories,
            "dates": table.dates}
    rows = frame.drop(columns="y").head(5)
    _, expected = read_as_trained(rows, meta)
    said: list[str] = []
    _, X = read_as_trained(rows.assign(when=rows["when"].astype("datetime64[us]").astype("int64")), meta, said.append)
    assert said == ["column 'when': 5 value(s) not read as dates, treated as missing"]
    assert np.isnan(X[:, table.feature_names.index("when.month")]).all()
    rows.to_json(tmp_path / "rows.json", orient="records", double_precision=15)
    assert '"when":1' in (tmp_path / "rows.json").read_text()  # epoch milliseconds
    _, from_json = read_as_trained(tmp_path / "rows.json", meta)
    np.testing.assert_allclose(from_json, expected, rtol=1e-12)  # JSON rounds the floats in their last digit
