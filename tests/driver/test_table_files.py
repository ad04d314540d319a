"""What a table file leaves open, settled the same way for training and predict: a CSV's
separator and encoding, a name twice in its header, numbers held as Python objects."""
from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
import pytest

from trialfuse.driver.table import load_table
from trialfuse.driver.table_files import READ_WARNINGS, numbers_as_numbers, read_frame
from trialfuse.errors import UserError

ROWS = pd.DataFrame({"city": ["Zürich", "Köln", "Malmö", "Århus"] * 10, "size": np.arange(40) % 7 * 1.5,
                     "y": np.arange(40) * 0.5})


@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_a_csv_is_read_with_the_separator_its_header_is_split_by(tmp_path, separator):
    path = tmp_path / "t.csv"
    ROWS.assign(note="a, b").to_csv(path, sep=separator, index=False)  # a comma inside a quoted value
    frame, _ = read_frame(path)
    pd.testing.assert_frame_equal(frame, ROWS.assign(note="a, b"))


def test_a_quoted_header_name_with_a_comma_does_not_decide_the_separator(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('"size, cm";"y"\n1,5;2\n3;4\n')
    frame, _ = read_frame(path)
    assert list(frame.columns) == ["size, cm", "y"] and frame["y"].tolist() == [2, 4]


@pytest.mark.parametrize(("text", "names"), [
    ("\na;b;c\n1;2;3\n", ["a", "b", "c"]),  # a blank first line
    ("sep=;\na;b;c\n1;2;3\n", ["a", "b", "c"]),  # Excel's line naming the separator
    ('"first\nname";b;c\n1;2;3\n', ["first\nname", "b", "c"]),  # a line break inside a quoted name
    ("a\n1\n", ["a"]),  # one column
])
def test_the_header_decides_the_separator_wherever_it_begins(tmp_path, text, names):
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert list(read_frame(path)[0].columns) == names


def test_a_csv_split_by_semicolons_reads_its_decimal_commas_as_numbers(tmp_path):
    """A German spreadsheet's CSV: its numbers were text levels, its target 'a class per value'."""
    path = tmp_path / "t.csv"
    path.write_text("fläche;stadt;preis\n80,5;Köln;364,18\n-3;Bonn;120\n;Köln;99,5\n")
    frame, _ = read_frame(path)
    assert frame["fläche"].tolist()[:2] == [80.5, -3.0] and np.isnan(frame["fläche"].iloc[2])
    assert frame["preis"].tolist() == [364.18, 120.0, 99.5] and frame["stadt"].tolist()[0] == "Köln"
    assert read_frame(path, text_columns=["fläche"])[0]["fläche"].tolist()[0] == "80,5"  # trained as text


@pytest.mark.parametrize(("data", "city"), [
    (ROWS.to_csv(index=False).encode("cp1252"), "Zürich"),
    (b"city,y\nZ\x81rich,1\n", "Z\x81rich"),  # a byte cp1252 has no letter for: Latin-1 reads it
    (b"\xef\xbb\xbfcity,y\nZ\xfcrich,1\n", "Zürich"),  # a UTF-8 mark, then a cp1252 byte: the mark is no name
    ("city\ty\nZürich\t1\n".encode("utf-16"), "Zürich"),  # Excel's "Unicode text"
])
def test_a_csv_saved_by_an_older_spreadsheet_is_read(tmp_path, data, city):
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    frame, _ = read_frame(path)
    assert frame.columns[0] == "city" and "y" in frame.columns and frame["city"].tolist()[0] == city


def test_a_utf8_file_with_a_bad_byte_stays_utf8_and_says_so(tmp_path, run_main):
    """One stray cp1252 byte in a UTF-8 file: it was read whole as cp1252, each of its other
    accented letters turned into two ("Zürich" into "ZÃ¼rich"), and nothing was said."""
    path = tmp_path / "t.csv"
    path.write_bytes(ROWS.to_csv(index=False).encode("utf-8").replace("Malmö".encode(), b"Malm\xf6", 1))
    frame, _ = read_frame(path)
    assert frame["city"].tolist()[:3] == ["Zürich", "Köln", "Malm\ufffd"] and frame["city"].iloc[6] == "Malmö"
    said = frame.attrs[READ_WARNINGS]
    assert said == [f"{path}: 1 byte(s) are not UTF-8 in a file that otherwise is; each is read as '\ufffd' "
                    "(re-save the file as UTF-8 to keep those characters)"]
    assert load_table(path, "y").warnings[:1] == said
    code, out, err = run_main("run", path, "--target", "y", "--models", "lightgbm", "--trials", "1", "--folds", "2",
                              "--out", tmp_path / "run", "--no-ensemble", "--no-explain")
    assert code == 0 and "1 byte(s) are not UTF-8" in " ".join((out + err).split())
    code, out, err = run_main("predict", tmp_path / "run", path, "--out", tmp_path / "p.csv")
    assert code == 0 and "1 byte(s) are not UTF-8" in " ".join((out + err).split())
    broken = tmp_path / "broken.csv"  # a UTF-16 mark on bytes that are not UTF-16: one line, not "Latin-1 reads..."
    broken.write_bytes(b"\xff\xfe" + b"a,b\n1,2\n\x00\xd8")
    with pytest.raises(UserError, match="its first bytes mark it utf-16, but it does not read as utf-16"):
        read_frame(broken)
    clean = tmp_path / "clean.csv"
    clean.write_bytes(ROWS.to_csv(index=False).encode("cp1252"))  # no valid UTF-8 beyond ASCII: cp1252, silently
    assert READ_WARNINGS not in read_frame(clean)[0].attrs


def test_a_name_twice_in_a_csv_header_is_refused(tmp_path):
    """pandas would rename the second "a.1" and the model would train on a column nobody named."""
    path = tmp_path / "t.csv"
    path.write_text("a,b,a\n1,2,3\n4,5,6\n")
    with pytest.raises(UserError, match="column name\\(s\\) 'a' appear twice in its header; rename one"):
        read_frame(path)


@pytest.mark.parametrize("codes", [["007", "7", "12", "7"], ["01", "02", "03", None]])
def test_a_csv_target_of_codes_keeps_them_as_written(tmp_path, codes):
    """Found by a new user: a CSV's target "007", "7", "12" was searched as two classes, and "01",
    "02", "03" came back from predict as 1, 2, 3; the README said codes are classes."""
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": range(4), "y": codes}).to_csv(path, index=False)
    frame = read_frame(path, "y")[0]
    assert [None if pd.isna(v) else v for v in frame["y"]] == codes and frame["x"].dtype == np.int64


@pytest.mark.parametrize("values", [[1, 2, 3, 4], [1.5, None, 1e-300, -2.0], [True, False, None, True],
                                    [True, False, True, True], ["a", 'b "c", d', None, "e"], ["0", "0.5", "10", "-3"]])
def test_any_other_csv_target_is_typed_as_the_reader_types_it(tmp_path, values):
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": range(4), "y": values}).to_csv(path, index=False)
    pd.testing.assert_series_equal(read_frame(path, "y")[0]["y"], pd.read_csv(path)["y"])


def test_a_name_twice_in_a_frame_is_refused_the_target_too():
    frame = pd.DataFrame(np.arange(60.0).reshape(20, 3), columns=["a", "b", "a"])
    for target in ("a", "b"):
        with pytest.raises(UserError, match="'a' appear twice; rename one"):
            load_table(frame, target)


def test_a_target_named_by_a_number_is_the_column_of_that_name():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=30), "5": rng.normal(size=30)})
    assert load_table(frame, 5).target == "5"


def test_numbers_held_as_python_objects_are_numbers():
    frame = pd.DataFrame({"float": pd.Series([1.5, None, 3.0], dtype=object),
                          "decimal": [decimal.Decimal("2.5"), decimal.Decimal("1"), None],
                          "int": pd.Series([1, 2, np.int64(3)], dtype=object),
                          "empty": pd.Series([None, None, None], dtype=object),
                          "text": ["1", "2", "x"], "flag": [True, False, True], "mixed": [1, "a", 2.0]})
    read = numbers_as_numbers(frame.copy())
    assert all(read[c].dtype == np.float64 for c in ("float", "decimal", "int", "empty"))
    assert read["float"].isna().tolist() == [False, True, False] and read["decimal"].tolist()[:2] == [2.5, 1.0]
    assert read["text"].tolist() == ["1", "2", "x"] and read["mixed"].tolist() == [1, "a", 2.0]
    assert read["flag"].dtype == bool


def test_a_frame_of_objects_trains_as_its_numbers_not_as_text():
    """astype(object) had every feature coded as text levels in text order (a garbled warning
    "0 non-numeric value(s)"); on the table it came from the holdout R² fell from 0.32 to 0.14."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=50), "b": rng.integers(0, 30, size=50), "y": rng.normal(size=50)})
    typed, held = load_table(frame, "y"), load_table(frame.astype(object), "y")
    assert held.categories == {} and held.warnings == [] and held.task.kind == typed.task.kind
    np.testing.assert_array_equal(held.X, typed.X)
    np.testing.assert_array_equal(held.y, typed.y)


def test_a_json_tables_floats_are_read_exactly(tmp_path):
    """pandas' default JSON parse was off in the last bit on 87% of random floats (CSV's is exact),
    so a model's predictions on a JSON table differed from the same rows' in a CSV."""
    import json

    values = np.random.default_rng(0).normal(size=1000)
    (tmp_path / "t.json").write_text(json.dumps([{"a": float(v), "y": 1.0} for v in values]))
    np.testing.assert_array_equal(read_frame(tmp_path / "t.json", "y")[0]["a"].to_numpy(), values)
