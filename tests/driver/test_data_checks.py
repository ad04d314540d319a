"""What a table's values say before anything trains (driver/data_checks.py and the reading
rules beside it), each case one a new user's awkward data hit."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from trialfuse.driver.data_checks import copies_in_holdout
from trialfuse.driver.table import load_table
from trialfuse.driver.table_files import read_frame
from trialfuse.errors import UserError
from trialfuse.survivors import TARGET, make_survivors

RNG = np.random.default_rng(0)


def noise_frame(rows: int = 200) -> pd.DataFrame:
    frame = pd.DataFrame(RNG.normal(size=(rows, 4)), columns=list("abcd"))
    return frame.assign(y=RNG.normal(size=rows))


def test_holdout_rows_that_copy_search_rows_are_counted(run_main, tmp_path):
    """Pure noise, each row five times: holdout R² 0.89, and nothing said."""
    X, y = RNG.normal(size=(10, 3)), RNG.normal(size=10)
    X[4, 1] = np.nan  # a missing value is equal to itself
    twice = np.vstack([X, X[[2, 4]]])
    assert copies_in_holdout(twice, np.append(y, y[[2, 4]]), np.arange(10), np.array([10, 11])) == [
        "2 of the holdout's 2 rows are copies of search rows (same features and target): the model was trained "
        "on them, so its holdout score reads high; drop duplicate rows to measure it"]
    assert copies_in_holdout(X, y, np.arange(8), np.array([8, 9])) == []
    few = RNG.integers(0, 2, size=(2000, 5)).astype(float)  # a survey's yes/no answers: rows repeat by nature
    assert copies_in_holdout(few[:, :4], few[:, 4], np.arange(1600), np.arange(1600, 2000)) == []
    pd.concat([noise_frame(60)] * 4).to_csv(tmp_path / "t.csv", index=False)
    code, out, err = run_main("run", tmp_path / "t.csv", "--target", "y", "--models", "lightgbm", "--trials", "1",
                              "--folds", "2", "--out", tmp_path / "run", "--json", "--no-ensemble", "--no-explain")
    assert code == 0, err
    assert any("rows are copies of search rows" in w for w in json.loads(out)["warnings"])


def test_a_feature_that_is_the_target_again_is_named():
    frame = noise_frame().assign(leak=lambda f: f.y * 3 + 1)
    assert [w for w in load_table(frame, "y").warnings if "'leak' gives the target itself" in w]
    classes = noise_frame().assign(y=lambda f: np.where(f.a > 0, "yes", "no"))
    classes["copy"] = classes.y.map({"yes": "Y", "no": "N"})
    said = load_table(classes, "y").warnings
    assert len(said) == 1 and "'copy' gives the target itself (on the search rows it names every row's class)" \
        in said[0]
    X, y, names = make_survivors(500, seed=0)  # real signal, no leak: nothing said
    assert load_table(pd.DataFrame(X, columns=names).assign(**{TARGET: y}), TARGET).warnings == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.assign(a=f.a * 1e41), "column 'a' of the DataFrame holds values beyond 3.4e+38"),
    (lambda f: f.assign(y=f.y * 1e200), "is too large for its squared errors to be scored"),
    (lambda f: f.assign(y=f.y * 1e-200), "is too small for its squared errors to be scored"),
    (lambda f: f.assign(tags=[["a", "b"]] * len(f)), "column 'tags' holds a list in a cell (e.g. ['a', 'b'])"),
    (lambda f: f.assign(z=f.a + 1j), "column 'z' holds complex numbers"),
    (lambda f: f.assign(y=pd.date_range("2020-01-01", periods=len(f)) .map(lambda d: d.replace(day=1))),
     "target column 'y' holds dates"),
])
def test_values_no_model_takes_are_one_line(change, message):
    """Each was a traceback, or every family 'diverged', or R² 1.0000 against a prior of 1.0000."""
    with pytest.raises(UserError, match=re.escape(message)):
        load_table(change(noise_frame()), "y")


def test_durations_are_seconds_and_booleans_with_a_blank_are_numbers(tmp_path):
    """A timedelta column was read as text (dropped as an identifier, or every value unseen at
    predict time); a bool column with a blank cell made predict refuse it as 'not numeric'."""
    frame = noise_frame(40).assign(dur=pd.to_timedelta(np.arange(40) % 7, unit="min"),
                                   flag=[True, None, False, True] * 10)
    read, _ = read_frame(frame)
    assert read["dur"].tolist()[:3] == [0.0, 60.0, 120.0] and read["flag"].tolist()[2:4] == [0.0, 1.0]
    assert np.isnan(read["flag"].iloc[1])
    table = load_table(frame, "y")
    assert "dur" in table.feature_names and "flag" in table.feature_names and not table.categories
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)  # True, False and a blank: read back as a column of bools and NaN
    assert np.isnan(read_frame(path)[0]["flag"].iloc[1]) and read_frame(path)[0]["flag"].iloc[0] == 1.0
    kept, _ = read_frame(pd.DataFrame({"y": pd.Series([True, False], dtype=object)}), "y")
    assert kept["y"].tolist() == [True, False]  # the target's classes stay True and False


def test_classes_written_two_ways_get_a_note_and_a_blank_header_elsewhere_is_a_feature(tmp_path):
    frame = noise_frame().assign(y=lambda f: np.where(f.a > 0, "Yes", np.where(f.b > 0, "yes", "no")))
    frame.loc[::7, "y"] = " NO "  # found by a new user: only the first pair was named, beside the task line alone
    assert "classes ' NO ' and 'no'; 'Yes' and 'yes' differ only in case or spaces: one class written two ways?" \
        in " ".join(load_table(frame, "y").warnings)  # a warning: in results.json, and said under --quiet too
    frame = noise_frame()
    frame.insert(3, "", RNG.integers(0, 50, len(frame)))  # a blank header mid-table: pandas names it "Unnamed: 3"
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert "Unnamed: 3" in load_table(tmp_path / "t.csv", "y").feature_names


def test_interval_classes_are_their_text_and_a_frame_of_intervals_is_kept(tmp_path):
    """pd.cut and pd.qcut: a class that JSON cannot hold crashed the run, and the kept DataFrame
    (data.parquet) could not be written."""
    from trialfuse.driver.run_dir import keep_frame

    x = RNG.normal(size=300)
    frame = pd.DataFrame({"a": x, "b": x ** 2, "band": pd.cut(x, 4), "y": pd.qcut(x, 3)})
    table = load_table(frame, "y")
    assert table.task.kind == "multiclass" and all(isinstance(c, str) for c in table.task.classes)
    assert list(table.task.classes) == [str(c) for c in frame["y"].cat.categories]  # in the bands' order, not as text
    levels = pd.Categorical(np.where(x > 0.5, "high", np.where(x > -0.5, "medium", "low")),
                            categories=["low", "medium", "high"], ordered=True)
    assert load_table(frame.assign(y=levels), "y").task.classes == ("low", "medium", "high")
    json.dumps(table.task.to_json())
    kept = pd.read_parquet(keep_frame(frame, tmp_path))
    assert kept["band"].tolist()[:3] == frame["band"].astype(str).tolist()[:3]


def test_a_sparse_column_is_kept_and_coded_as_its_values(tmp_path):
    """pyarrow refuses a pandas Sparse column with a TypeError: a raw traceback out of
    `trialfuse.fit`, after the study was stamped (the rerun into that folder then refused)."""
    from trialfuse.driver.run_dir import keep_frame

    x = RNG.normal(size=200)
    mostly_zero = np.where(RNG.random(200) < 0.1, x, 0.0)
    frame = pd.DataFrame({"a": x, "sp": pd.arrays.SparseArray(mostly_zero), "y": x + mostly_zero})
    kept = pd.read_parquet(keep_frame(frame, tmp_path))
    assert kept["sp"].dtype == np.float64 and np.array_equal(kept["sp"].to_numpy(), mostly_zero)
    table = load_table(frame, "y")
    assert np.array_equal(table.X[:, table.feature_names.index("sp")], mostly_zero)


def test_new_rows_with_a_feature_column_twice_are_refused_by_that_name():
    """A DataFrame given to predict with a needed column twice: "was numeric in training but is
    not numeric here" (two columns read as one); another column twice is nobody's business."""
    from trialfuse.driver.table import encode_features

    rows = pd.DataFrame([[1.0, 2.0, 3.0, 4.0]], columns=["num", "b", "num", "other"])
    with pytest.raises(UserError, match=r"^the table: column name\(s\) 'num' appear twice; rename one$"):
        encode_features(rows, ["num", "b"], {})
    assert encode_features(pd.DataFrame([[1.0, 2.0, 3.0]], columns=["num", "x", "x"]), ["num"], {}).tolist() == [[1.0]]


def test_dates_with_a_stray_word_are_dates_and_other_spellings_are_named():
    """Every 100th date "unknown": the column became 255 text levels (holdout R² -0.018 where the
    dates gave 0.988), as did dates written 05/01/2020, with nothing said."""
    days = pd.date_range("2020-01-01", periods=600, freq="D")
    noise = RNG.normal(size=600)
    iso = [d if i % 100 else "unknown" for i, d in enumerate(days.strftime("%Y-%m-%d"))]
    table = load_table(pd.DataFrame({"d": iso, "x": noise, "y": days.month + noise / 10}), "y")
    assert table.dates == ["d"] and "d.month" in table.feature_names
    assert "column 'd': 6 value(s) are not ISO dates, taken as missing" in table.warnings
    for spelled in (days.strftime("%d/%m/%Y"), days.strftime("%b %d, %Y")):
        table = load_table(pd.DataFrame({"d": spelled, "x": noise, "y": days.month + noise / 10}), "y")
        assert table.dates == [] and any(w.startswith("column 'd' looks like dates written another way") and
                                         "ISO 8601" in w for w in table.warnings)
    table = load_table(pd.DataFrame({"d": ["north", "south"] * 300, "x": noise, "y": RNG.normal(size=600)}), "y")
    assert table.warnings == []


def test_a_few_far_out_target_values_are_said_under_any_metric():
    """Five values of 1e9 among 500 near zero: holdout R² 0.001, and no hint why. Under --metric
    mae the models train on absolute error (test_absolute_error.py), so the hint points there, and
    under it says what the values still do."""
    frame = noise_frame(500)
    frame.loc[:4, "y"] = 1e9
    said = [w for w in load_table(frame, "y").warnings if "far from the rest" in w]
    assert len(said) == 1 and said[0].startswith("5 of the search rows' target values lie far from the rest (e.g. "
                                                 "1e+09") and "every model trains on squared error, which" in said[0]
    assert said[0].endswith("or train and rank the models by absolute error too (--metric mae), which they barely move")
    [under_mae] = [w for w in load_table(frame, "y", metric="mae").warnings if "far from the rest" in w]
    assert "R² and RMSE are mostly theirs (the search trains models on absolute error too" in under_mae
    assert not [w for w in load_table(noise_frame(500), "y").warnings if "far from the rest" in w]
    counts = noise_frame(2000).assign(y=RNG.poisson(1000.0, 2000))  # a count (one row at 0): half its trials
    counts.loc[:4, "y"], counts.loc[5, "y"] = 1e9, 0  # train on the Poisson deviance
    [said] = [w for w in load_table(counts, "y").warnings if "far from the rest" in w]
    assert "every model trains on squared error or the Poisson deviance, which they pull hard" in said


def test_codes_for_unknown_and_typos_far_out_are_named():
    """-999 on 2% of a column's rows (the NN read it as a number and its R² fell to 0.36), a typo
    of 1e7 (the same): each named with its column, values as written (99999, not 1e+05); a long
    tail, a film of 5,220 minutes among 90-minute ones, a category column's codes are not; many
    columns, three lines."""
    frame = noise_frame(1000)
    frame.loc[:19, "a"] = -999
    frame.loc[7, "b"] = 1e7
    frame["votes"] = np.exp(RNG.normal(scale=2, size=1000))
    frame["length"] = RNG.normal(90, 15, 1000).round()
    frame.loc[3, "length"] = 5220
    frame["kind"] = np.where(frame.c > 2.5, "rare", [f"k{i % 30}" for i in range(1000)])
    said = load_table(frame, "y").warnings
    assert said == [
        "column 'a': -999 (on 20 rows, 2.0%) lies far beyond its other values, as a code for \"unknown\" would: the "
        "NN reads it as a category of its own, the trees as written (a blank cell says missing plainly)",
        f"column 'b': far beyond the others, 1 value(s) (e.g. 10000000; 98% lie between "
        f"{frame.b.drop(7).quantile(0.01):.4g} and {frame.b.drop(7).quantile(0.99):.4g}): typos? The NN reads them "
        "as missing"]
    frame.loc[:19, "b"] = 99999
    frame.loc[20:39, "b"] = -999
    frame.loc[:19, ["c", "d"]] = -999
    said = load_table(frame, "y").warnings
    assert len(said) == 4 and said[1].startswith("column 'b': -999, 99999 (on 40 rows, 4.0%) lie far beyond") \
        and said[3] == "... and 1 more such warning(s) of far values", said


def test_the_checks_keep_quiet_on_ordinary_data():
    """A cold review's false positives: a feature present on 4 of 500 rows, a small table of 40
    classes, a log-normal price, month names and fractions, a text date target under --task."""
    from trialfuse.driver.target import decide

    frame = noise_frame(500).assign(y=lambda f: np.where(f.a > 0, "yes", "no"))
    frame["rare"] = np.nan
    frame.loc[:3, "rare"] = [1, 2, 3, 4]
    assert load_table(frame, "y").warnings == []
    many = noise_frame(150).assign(y=[f"c{i % 40}" for i in range(150)])
    assert load_table(many, "y").warnings == []
    price = noise_frame(1000).assign(y=np.exp(RNG.normal(scale=1.5, size=1000)))
    assert load_table(price, "y").warnings == []
    for words in (["January", "March", "Dec"], ["1-2", "12-3", "1/2"], ["10:30", "1st", "2nd"]):
        text = noise_frame(300).assign(kind=[words[i % 3] for i in range(300)])
        assert load_table(text, "y").warnings == [], words
    dated = pd.Series(list(pd.date_range("2020-01-01", periods=50).strftime("%Y-%m-%d")) * 4)
    with pytest.raises(UserError, match="holds dates.*--task multiclass takes each date text as a class"):
        decide(dated, "y")
    assert decide(dated, "y", "multiclass")[0].kind == "multiclass"


def test_predict_reads_only_the_models_columns_and_an_older_models_text_as_text():
    """An extra column of lists was refused at predict time though the model never reads it; a
    bool column with a blank, coded as text levels by an older version, read as 1.0 and 0.0 and
    matched no level."""
    from trialfuse.driver.table import encode_features

    rows = pd.DataFrame({"flag": [True, None, False], "x": [1.0, 2.0, 3.0], "tags": [["a"], ["b"], []]})
    read, _ = read_frame(rows, "y", text_columns=["flag"], only={"flag", "x"})
    codes = encode_features(read, ["flag", "x"], {"flag": ["False", "True"]})
    assert codes[:, 0].tolist()[::2] == [1.0, 0.0] and np.isnan(codes[1, 0])
