"""Columns that only name rows are not features: a row index leaks a table's storage order,
a per-row unique text is noise. They are dropped with a reason; --keep-columns keeps them."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trialfuse.driver.table import load_table
from trialfuse.errors import UserError
from trialfuse.survivors import TARGET, make_survivors


@pytest.fixture
def sorted_frame():
    """The reference table stored in target order, as some public tables are."""
    X, y, names = make_survivors(400, seed=0)
    frame = pd.DataFrame(X, columns=names)
    frame[TARGET] = y
    frame = frame.sort_values(TARGET).reset_index(drop=True)
    frame["title"] = [f"row {i}" for i in range(len(frame))]
    frame["group"] = [f"g{i % 7}" for i in range(len(frame))]
    return frame


def test_pandas_index_and_unique_text_are_dropped_with_their_reasons(sorted_frame, tmp_path):
    path = tmp_path / "t.csv"
    sorted_frame.to_csv(path)  # pandas writes its index first, as the unnamed column "Unnamed: 0"
    table = load_table(path, TARGET)
    assert "Unnamed: 0" not in table.feature_names and "title" not in table.feature_names
    assert "group" in table.feature_names  # repeated text is a real category
    assert table.identifiers["Unnamed: 0"].startswith("a row index: an unnamed integer column")
    assert table.identifiers["title"].startswith("an identifier")
    assert set(table.identifiers) <= set(table.dropped)


def test_a_named_counter_column_is_a_row_index(sorted_frame, tmp_path):
    sorted_frame.insert(0, "id", np.arange(len(sorted_frame)) + 1000)
    sorted_frame["visits"] = np.arange(len(sorted_frame)) % 9  # integers, but not a counter
    path = tmp_path / "t.parquet"
    sorted_frame.to_parquet(path)
    table = load_table(path, TARGET)
    assert "row numbers plus a constant" in table.identifiers["id"] and "visits" in table.feature_names


def test_keep_columns_keeps_them_and_a_wrong_name_is_refused(sorted_frame, tmp_path):
    path = tmp_path / "t.csv"
    sorted_frame.to_csv(path)
    table = load_table(path, TARGET, keep=["Unnamed: 0"])
    assert "Unnamed: 0" in table.feature_names and "title" not in table.feature_names
    with pytest.raises(UserError, match="--keep-columns names 'nope'"):
        load_table(path, TARGET, keep=["nope"])


def test_the_run_says_so_and_the_saved_model_records_it(sorted_frame, tmp_path, run_main):
    path = tmp_path / "t.csv"
    sorted_frame.to_csv(path)
    code, out, err = run_main("run", path, "--target", TARGET, "--models", "lightgbm", "--trials", "1", "--folds",
                              "2", "--out", tmp_path / "run", "--no-ensemble", "--json", "--no-explain")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert any(w.startswith("column 'Unnamed: 0' is not used: a row index") for w in warnings), warnings
    meta = json.loads((tmp_path / "run" / "best_model" / "metadata.json").read_text())
    assert meta["dropped_columns"]["title"].startswith("an identifier")


def test_a_saved_model_no_better_than_the_prior_says_so_and_names_the_dropped_columns():
    """A counter column that was the signal dropped as a row index: the run saved a model no
    better than the search rows' mean, with nothing said about it."""
    from trialfuse.driver.final_model import _no_better_than_prior

    rng = np.random.default_rng(0)
    days = np.arange(1, 101)
    table = load_table(pd.DataFrame({"row": days, "temp": rng.normal(size=100), "sales": 0.5 * days}), "sales")
    assert "row" in table.identifiers
    said = _no_better_than_prior(table, np.arange(80), -0.0029, -0.0005)
    assert said == ["the saved model scores no better on the holdout than the prior (R² -0.0029 against -0.0005): "
                    "columns dropped as naming rows ('row') may be what predicts it: --keep-columns keeps them"]
    assert _no_better_than_prior(table, np.arange(80), 0.31, -0.0005) == []
    kept = load_table(pd.DataFrame({"row": days, "temp": rng.normal(size=100), "sales": 0.5 * days}), "sales",
                      keep=["row"])
    assert "rows are too few" in _no_better_than_prior(kept, np.arange(80), 0.0, 0.0)[0]


@pytest.mark.parametrize("name", ["day", "week", "visit"])
def test_a_counter_not_named_as_row_numbers_is_a_feature_with_a_warning(name):
    """A day number 1..n was dropped as a row index, though a trend over days may be the signal."""
    days = np.arange(1, 101)
    noise = np.random.default_rng(0).normal(size=100)
    table = load_table(pd.DataFrame({name: days, "temp": noise, "sales": 0.5 * days}), "sales")
    assert name in table.feature_names and name not in table.dropped
    assert [w for w in table.warnings if w.startswith(f"column {name!r} counts the rows (1, 2, ...): used as a")]


@pytest.mark.parametrize("name", ["id", "ID", "customer_id", "Row ID", "row_number", "index", "No.", "#", "rowid",
                                  "PassengerId", "CustomerID", "row_index", "level_0", "S.No"])
def test_a_counter_named_as_row_numbers_is_dropped(name):
    noise = np.random.default_rng(0).normal(size=100)
    table = load_table(pd.DataFrame({name: np.arange(100) + 7, "temp": noise, "y": noise * 2}), "y")
    assert "row numbers plus a constant" in table.identifiers[name]


def test_the_counter_warning_spares_dates_kept_columns_and_halves():
    """A daily date's day count steps by one (it was told to leave its date out), a column named
    in --keep-columns was kept on purpose, and 0.5, 1.5, ... counts no rows."""
    noise = np.random.default_rng(0).normal(size=100)
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=100).astype(str), "id": np.arange(100),
                          "half": np.arange(100) + 0.5, "temp": noise, "y": noise * 2})
    table = load_table(frame, "y", keep=["id"])
    assert "id" in table.feature_names and "half" in table.feature_names
    assert not [w for w in table.warnings if "counts the rows" in w], table.warnings
