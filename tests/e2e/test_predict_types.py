"""A predict file's category columns are read as the training file's were, whatever pandas
would guess from this file alone (a column of only numbers and blanks, leading zeros)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import cli
from trialfuse.driver.table import load_table
from trialfuse.predict import predict_table
from trialfuse.survivors import TARGET, make_survivors

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("types")
    X, y, names = make_survivors(400, seed=0)
    frame = pd.DataFrame(X[:, :4], columns=names[:4])
    codes = np.array(["7", "A", "B", "02134"])[np.arange(len(frame)) % 4]
    frame["code"] = codes
    frame[TARGET] = y + np.where(codes == "7", 3.0, 0.0) + np.where(codes == "02134", -3.0, 0.0)
    frame.loc[::13, "code"] = None
    frame.to_csv(work / "train.csv", index=False)
    proc = cli("run", work / "train.csv", "--target", TARGET, "--models", "lightgbm", "--trials", "1", "--folds", "2",
               "--out", work / "run", "--no-ensemble", "--quiet", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    return work, frame


@pytest.mark.parametrize("value", ["7", "02134"])
def test_a_category_column_of_only_numbers_predicts_as_the_training_typed_file(trained, value):
    work, frame = trained
    rows = frame.drop(columns=[TARGET]).head(6).copy()
    rows["code"] = [value, None, value, value, None, value]  # pandas alone reads 7.0 / 2134.0 (with NaN)
    numeric_only = work / f"numeric-{value}.csv"
    rows.to_csv(numeric_only, index=False)
    assert pd.read_csv(numeric_only)["code"].dtype == np.float64
    mixed = work / f"mixed-{value}.csv"  # the same rows after one row with a letter: read as text
    pd.concat([rows, rows.head(1).assign(code="A")]).to_csv(mixed, index=False)
    expected = predict_table(work / "run", mixed)["prediction"].to_numpy()[:6]
    warnings: list[str] = []
    got = predict_table(work / "run", numeric_only, on_warning=warnings.append)["prediction"].to_numpy()
    np.testing.assert_array_equal(got, expected)
    assert warnings == []  # every value was seen in training


def test_unseen_values_are_counted_and_said(trained):
    work, frame = trained
    rows = frame.drop(columns=[TARGET]).head(4).copy()
    rows["code"] = ["7", "Z", "Z", None]
    first = rows.columns[0]
    rows[first] = [np.inf, 1.0, -np.inf, 2.0]  # an infinite number reads as missing, and is said
    rows.to_csv(work / "unseen.csv", index=False)
    proc = cli("predict", work / "run", work / "unseen.csv")
    assert proc.returncode == 0, proc.stderr
    assert "warning: column 'code': 2 value(s) not seen in training, treated as missing" in proc.stderr
    assert f"warning: column '{first}': 2 value(s) infinite, treated as missing" in proc.stderr


def test_a_mostly_numeric_text_column_gets_a_warning(tmp_path):
    X, y, names = make_survivors(200, seed=0)
    frame = pd.DataFrame(X[:, :3], columns=names[:3])
    frame[TARGET] = y
    frame["size"] = [str(i % 40) for i in range(len(frame))]
    frame.loc[5, "size"] = "unknown"
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = load_table(tmp_path / "t.csv", TARGET)
    assert len(table.warnings) == 1 and "column 'size' is read as text because 1 of its 200 values are not numbers " \
        "('unknown')" in table.warnings[0]
    frame["size"] = np.where(np.arange(len(frame)) % 3 == 0, frame["size"], np.where(y > 0, "high", "low"))
    frame["grade"] = pd.Categorical(np.arange(len(frame)) % 5)  # a category on purpose: nothing to clean
    assert load_table(frame, TARGET).warnings == []  # two thirds "high"/"low": text, not a stray word or two


def test_a_date_column_is_used_and_predict_takes_it_as_text_or_as_timestamps(tmp_path):
    """Trained from a CSV (dates as ISO text), served from Parquet (datetime64) and from the CSV
    alike; the saved model reproduces its holdout score."""
    X, y, names = make_survivors(300, seed=0)
    when = pd.date_range("2020-01-01", periods=len(y), freq="D")
    frame = pd.DataFrame(X[:, :3], columns=names[:3]).assign(when=when.strftime("%Y-%m-%d"))
    frame[TARGET] = y + when.month.to_numpy()
    frame.to_csv(tmp_path / "train.csv", index=False)
    proc = cli("run", tmp_path / "train.csv", "--target", TARGET, "--models", "lightgbm", "--trials", "1",
               "--folds", "2", "--out", tmp_path / "run", "--no-ensemble", "--quiet", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "run" / "best_model" / "metadata.json").read_text())
    assert meta["dates"] == ["when"] and "when.month" in meta["feature_names"]
    rows = frame.drop(columns=[TARGET])
    rows.assign(when=pd.to_datetime(rows["when"])).to_parquet(tmp_path / "rows.parquet")
    from_text = predict_table(tmp_path / "run", tmp_path / "train.csv")
    pd.testing.assert_frame_equal(predict_table(tmp_path / "run", tmp_path / "rows.parquet"), from_text)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    sealed = json.loads((tmp_path / "run" / "holdout_indices.json").read_text())["holdout_rows"]
    from sklearn.metrics import r2_score
    assert r2_score(frame[TARGET].iloc[sealed], from_text["prediction"].iloc[sealed]) == pytest.approx(
        results["holdout_score"], abs=1e-9)


def test_numbers_held_as_python_objects_predict_as_numbers(trained):
    """A frame astype(object) (a database fetch), or a row built from a dict with None for a
    missing number: the numbers they are, as the CSV of the same rows gives (they were refused
    as "numeric in training but not numeric here")."""
    work, frame = trained
    rows = frame.drop(columns=[TARGET]).head(4).astype(object)
    rows.iloc[1, 0] = None
    rows.to_csv(work / "objects.csv", index=False)
    expected = predict_table(work / "run", work / "objects.csv")["prediction"].to_numpy()
    np.testing.assert_array_equal(predict_table(work / "run", rows)["prediction"].to_numpy(), expected)
    one = pd.DataFrame([rows.iloc[1].to_dict()])  # one record, its None kept
    assert one.iloc[0, 0] is None and one.dtypes.iloc[0] is np.dtype(object)
    assert predict_table(work / "run", one)["prediction"].to_numpy()[0] == expected[1]


def test_class_labels_read_as_floats_name_their_columns_as_a_csv_writes_them():
    """Labels 0.0 / 1.0 (a float column of classes): `prediction` is written 1, so its
    probability column is probability_1, not probability_1.0."""
    from trialfuse.predict import prediction_frame
    from trialfuse.task import Kind, Task

    frame = prediction_frame(Task(Kind.BINARY, (0.0, 1.0)), np.array([[0.2, 0.8], [0.9, 0.1]]))
    assert list(frame.columns) == ["prediction", "probability_0", "probability_1"]
    assert frame["prediction"].tolist() == [1.0, 0.0] and frame["probability_1"].tolist() == [0.8, 0.1]


def test_predict_to_stdout_with_a_terminal_on_stderr_writes_every_row_to_stdout(trained):
    """The spinner that shows on a terminal while a million rows are read and predicted takes
    stdout over while it spins: the CSV written under it went to the terminal, not the file."""
    import os
    import pty
    import subprocess
    import sys
    import threading

    from helpers import CLI_CODE

    work, frame = trained
    frame.drop(columns=[TARGET]).head(9).to_csv(work / "nine.csv", index=False)
    ours, theirs = pty.openpty()
    drained = threading.Thread(target=lambda: _drain(ours), daemon=True)  # a full terminal would block the spinner
    drained.start()
    with open(work / "out.csv", "w") as out:
        proc = subprocess.run([sys.executable, "-c", CLI_CODE, "predict", str(work / "run"), str(work / "nine.csv")],
                              stdout=out, stderr=theirs, stdin=subprocess.DEVNULL, timeout=120)
    os.close(theirs)
    drained.join(timeout=10)
    assert proc.returncode == 0
    assert len(pd.read_csv(work / "out.csv")) == 9


def _drain(fd: int) -> None:
    """Read a terminal's output until it closes, then close it."""
    import os

    try:
        while os.read(fd, 4096):
            pass
    except OSError:  # the other end closed
        pass
    os.close(fd)


def test_a_file_name_rich_would_read_as_markup_is_predicted(trained):
    """The spinner's text is rich markup: a path `q[/1].csv` (a folder `q[`) raised MarkupError."""
    work, frame = trained
    (work / "q[").mkdir(exist_ok=True)
    frame.drop(columns=[TARGET]).head(3).to_csv(work / "q[" / "1].csv", index=False)
    proc = cli("predict", work / "run", work / "q[" / "1].csv", "--out", work / "p[red].csv")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(work / "p[red].csv")) == 3


def test_predictions_are_written_in_the_format_the_out_suffix_names(trained):
    """A new user's `--out p.parquet` got CSV text under that name."""
    work, frame = trained
    rows = frame.drop(columns=[TARGET]).head(5)
    rows.to_csv(work / "five.csv", index=False)
    expected = predict_table(work / "run", work / "five.csv")
    for name, read in (("p.parquet", pd.read_parquet), ("p.json", lambda path: pd.read_json(path, precise_float=True)),
                       ("p.jsonl", lambda path: pd.read_json(path, lines=True, precise_float=True)),
                       ("p.csv", lambda path: pd.read_csv(path, float_precision="round_trip"))):
        proc = cli("predict", work / "run", work / "five.csv", "--out", work / name)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(read(work / name)["prediction"], expected["prediction"])  # every digit


def test_an_out_predictions_cannot_be_written_as_is_refused_before_predicting(trained, monkeypatch, run_main):
    """`--out p.npz` (a format read, not written) is one line and exit 2, and nothing is predicted first."""
    import trialfuse.predict

    work, frame = trained
    frame.drop(columns=[TARGET]).head(5).to_csv(work / "five.csv", index=False)
    predicted = []
    monkeypatch.setattr(trialfuse.predict, "predict_table", lambda *a, **k: predicted.append(a))
    code, _, err = run_main("predict", work / "run", work / "five.csv", "--out", work / "p.npz")
    assert code == 2 and "predictions are written as CSV, Parquet or JSON" in err
    assert predicted == [] and not (work / "p.npz").exists()
