"""Every kind of bad input: exit code 2, one clear line, no traceback, no training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def write(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    elif path.suffix == ".json":
        path.write_text(frame.to_json(orient="records"))
    return path


def good_frame(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "y": rng.normal(size=rows)})


def assert_rejected(result, *fragments: str) -> None:
    code, out, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("trialfuse: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_missing_file(run_main, tmp_path):
    assert_rejected(run_main("run", tmp_path / "nope.csv", "--target", "y"), "data file not found", "nope.csv")


def test_unknown_format(run_main, tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_text("a,b\n1,2\n")
    assert_rejected(run_main("run", path, "--target", "y"), "unknown table format", ".xlsx")


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("broken.parquet", b"this is not parquet at all", "Parquet"),
    ("broken.json", b'[{"a": 1, "y": ', "JSON"),
])
def test_unreadable_table(run_main, tmp_path, name, content, kind):
    path = tmp_path / name
    path.write_bytes(content)
    assert_rejected(run_main("run", path, "--target", "y"), "cannot read", f"as {kind}")


def test_npz_without_arrays(run_main, tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, features=np.zeros((3, 2)))
    assert_rejected(run_main("run", path), "lacks array(s) X, y")


def test_empty_file(run_main, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert_rejected(run_main("run", path, "--target", "y"), "is empty")


def test_header_only_table(run_main, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("a,b,y\n")
    assert_rejected(run_main("run", path, "--target", "y"), "has no rows")


def test_target_absent(run_main, tmp_path):
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("run", path, "--target", "price"), "target column 'price' not found", "a, b, y")


def test_target_required_for_csv(run_main, tmp_path):
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("run", path), "--target is required")


def test_non_numeric_target(run_main, tmp_path):
    frame = good_frame().astype({"y": object})
    frame.loc[3, "y"] = "high"
    path = write(tmp_path / "t.csv", frame)
    assert_rejected(run_main("run", path, "--target", "y"), "target column 'y' is not numeric", "'high'")


@pytest.mark.parametrize("args, fragments", [
    (["--task", "ranking"], ["--task must be one of auto, regression, binary, multiclass"]),
    (["--metric", "accuracy"], ["--metric 'accuracy' is not a regression metric", "r2"]),
    (["--class-weight", "balanced"], ["--class-weight balanced weighs classes", "searched as numbers"]),
    (["--class-weight", "heavy"], ["--class-weight must be one of none, balanced, got 'heavy'"]),
])
def test_bad_task_options(run_main, tmp_path, args, fragments):
    assert_rejected(run_main("run", write(tmp_path / "t.csv", good_frame()), "--target", "y", *args), *fragments)


@pytest.mark.parametrize("values, args, fragments", [
    (["same"] * 60, [], ["has one class only ('same')", "nothing to learn"]),
    ([1.0, 2.0, 3.0] * 20, ["--task", "binary"], ["--task binary needs two classes", "has 3"]),
    (["a", "b", None] * 20, [], ["20 missing or infinite value(s)", "first at row 2"]),
])
def test_bad_class_targets_are_refused_before_training(run_main, tmp_path, values, args, fragments):
    frame = good_frame().assign(y=values)
    assert_rejected(run_main("run", write(tmp_path / "t.csv", frame), "--target", "y", *args), *fragments)


def test_a_class_too_small_for_the_folds(run_main, tmp_path):
    """Measured against the default K: 8 folds for two classes, 5 for more where the rare class
    cannot fill 8 (options.folds_of)."""
    frame = good_frame().assign(y=["common"] * 57 + ["rare"] * 3)
    assert_rejected(run_main("run", write(tmp_path / "t.csv", frame), "--target", "y"),
                    "class 'rare' has 3 row(s)", "0.2 holdout plus 8 folds")
    frame = good_frame().assign(y=["one"] * 30 + ["two"] * 27 + ["rare"] * 3)
    assert_rejected(run_main("run", write(tmp_path / "t.csv", frame), "--target", "y"),
                    "class 'rare' has 3 row(s)", "0.2 holdout plus 5 folds")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_missing_or_infinite_target(run_main, tmp_path, bad):
    frame = good_frame()
    frame.loc[5, "y"] = bad
    path = write(tmp_path / "t.parquet", frame)
    assert_rejected(run_main("run", path, "--target", "y"), "1 missing or infinite value(s)", "row 5")


def test_constant_target(run_main, tmp_path):
    frame = good_frame().assign(y=3.5)
    path = write(tmp_path / "t.json", frame)
    assert_rejected(run_main("run", path, "--target", "y"), "is constant (3.5)")


def test_no_usable_feature(run_main, tmp_path):
    frame = pd.DataFrame({"empty": [np.nan] * 30, "same": [1.0] * 30, "y": np.arange(30.0)})
    path = write(tmp_path / "t.csv", frame)
    assert_rejected(run_main("run", path, "--target", "y"), "no usable feature columns", "empty: all values missing",
                    "same: constant")


def test_only_the_target_column(run_main, tmp_path):
    path = write(tmp_path / "t.csv", good_frame()[["y"]])
    assert_rejected(run_main("run", path, "--target", "y"), "no usable feature columns")


def test_too_few_rows(run_main, tmp_path):
    path = write(tmp_path / "t.csv", good_frame(rows=12))
    assert_rejected(run_main("run", path, "--target", "y", "--folds", "5"), "too few rows (12)",
                    "need at least 13 (or --folds 4)")  # the other way out, said


def test_unknown_model_family(run_main, tmp_path):
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("run", path, "--target", "y", "--models", "nn,randomforest"),
                    "unknown model family 'randomforest'")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--trials", "0", "--trials must be at least 1"),
    ("--folds", "1", "--folds must be at least 2"),
    ("--holdout", "1.5", "--holdout must be a fraction"),
    ("--holdout", "0", "--holdout must be a fraction"),
    ("--seed", "-1", "--seed must be zero or positive"),
    ("--devices", "tpu", "--devices must be"),
    ("--trials", "many", "Invalid value for '--trials'"),
    ("--models", "", "--models is empty"),
    ("--fuse", "sometimes", "--fuse must be auto, off, on or a positive number"),
    ("--fuse", "0", "--fuse must be auto, off, on or a positive number"),
    ("--precision", "fp16", "--precision must be one of auto, fp32, tf32, bf16"),
    ("--timeout", "soon", "--timeout must be a duration like 90s, 20m or 6h"),
    ("--timeout", "0s", "--timeout must be positive"),
])
def test_bad_option_values(run_main, tmp_path, option, value, message):
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("run", path, "--target", "y", option, value), message)


def test_more_cpu_workers_than_cores_are_refused(run_main, tmp_path, monkeypatch):
    """--devices 100 on 2 cores was taken: 93 s for a 5 s budget."""
    monkeypatch.setattr("trialfuse.transport.placement.usable_cores", lambda: 2)
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("run", path, "--target", "y", "--devices", "100"),
                    "--devices 100: 100 CPU workers on 2 CPU core(s) free for them; at most one a core")


def test_an_out_folder_of_other_files_is_refused_and_kept(run_main, tmp_path):
    """A run replaces best_model/, report_files/ and results.json in its --out: in a folder of the
    user's own it deleted them."""
    path = write(tmp_path / "t.csv", good_frame())
    mine = tmp_path / "mine"
    (mine / "best_model").mkdir(parents=True)
    (mine / "best_model" / "notes.txt").write_text("keep")
    (mine / "results.json").write_text('{"mine": 1}')
    assert_rejected(run_main("run", path, "--target", "y", "--out", mine),
                    f"--out {mine} holds files that are not a trialfuse run's")
    assert (mine / "best_model" / "notes.txt").read_text() == "keep"
    assert (mine / "results.json").read_text() == '{"mine": 1}'
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".DS_Store").write_text("")  # a folder of hidden files only is empty to its user
    from trialfuse.driver.run_dir import check_out

    check_out(hidden)


@pytest.mark.parametrize("where", ["file/run", "locked/run"])
def test_an_out_that_cannot_be_written_is_one_line(run_main, tmp_path, where):
    import os

    path = write(tmp_path / "t.csv", good_frame())
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "locked").mkdir(mode=0o500)
    if where.startswith("locked") and os.access(tmp_path / "locked", os.W_OK):
        pytest.skip("this user writes anywhere (root)")
    assert_rejected(run_main("run", path, "--target", "y", "--out", tmp_path / where),
                    f"--out {tmp_path / where}: cannot write in {tmp_path / where.split('/')[0]}")


def test_predict_to_a_folder_that_is_not_there_is_one_line(run_main, tmp_path):
    model_dir = tmp_path / "best_model"
    model_dir.mkdir()
    (model_dir / "metadata.json").write_text("{}")
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("predict", model_dir, path, "--out", tmp_path / "absent" / "p.csv"),
                    f"cannot write in {tmp_path / 'absent'}")


def test_predict_over_its_own_table_or_the_runs_files_is_refused_and_nothing_changes(run_main, tmp_path,
                                                                                       monkeypatch):
    """`predict RUN t.csv --out t.csv` replaced the table with one prediction column, and
    `--out RUN/results.json` the run's record."""
    run = tmp_path / "run"
    (run / "best_model").mkdir(parents=True)
    (run / "best_model" / "metadata.json").write_text("{}")
    (run / "results.json").write_text("{}")
    path = write(tmp_path / "t.csv", good_frame())
    before = path.read_bytes()
    assert_rejected(run_main("predict", run, path, "--out", path), f"--out {path} is the table being read")
    for target in (run / "results.json", run / "best_model" / "p.csv", run / "p.csv"):
        assert_rejected(run_main("predict", run / "best_model", path, "--out", target),
                        f"--out {target} lies in {run.resolve()}, among the run's own files")
    (run / "results.json").unlink()  # a best_model/ on its own: that folder is guarded
    assert_rejected(run_main("predict", run / "best_model", path, "--out", run / "best_model" / "p.csv"),
                    f"lies in {(run / 'best_model').resolve()}, among the run's own files")
    (run / "best_model").rename(tmp_path / "mymodel")  # under another name, and given as "."
    assert_rejected(run_main("predict", tmp_path / "mymodel", path, "--out", tmp_path / "mymodel" / "metadata.json"),
                    "among the run's own files")
    monkeypatch.chdir(tmp_path / "mymodel")
    assert_rejected(run_main("predict", ".", path, "--out", "metadata.json"), "among the run's own files")
    run = tmp_path / "mymodel"
    assert path.read_bytes() == before and (run / "metadata.json").read_text() == "{}"


def test_make_table_needs_rows(run_main, tmp_path):
    assert_rejected(run_main("make-table", tmp_path / "t.csv", "--rows", "0"), "--rows must be at least 1")
    assert_rejected(run_main("make-table", tmp_path / "t.csv", "--rows", "5", "--bands", "10"),
                    "--bands 10 needs at least as many rows (--rows 5)")  # it wrote 5 rows "(10 bands)"
    assert_rejected(run_main("make-table", tmp_path / "absent" / "t.csv", "--rows", "5"),
                    f"folder {tmp_path / 'absent'} is not there")  # it made the folder, where predict --out refuses
    assert not (tmp_path / "absent").exists()
    assert_rejected(run_main("make-table", tmp_path / "t.csv", "--rows", "5", "--seed", "-1"),
                    "--seed must be zero or positive, got -1")  # numpy's traceback
    assert_rejected(run_main("make-table", tmp_path / "b.npz", "--rows", "5", "--bands", "2"),
                    "make-table --bands writes .csv, not .npz")  # it said "make-table writes .csv", which writes .npz
    assert_rejected(run_main("make-table", tmp_path / "t.txt", "--rows", "5"),
                    "make-table writes .csv or .npz, not .txt")
    code, out, _ = run_main("make-table", tmp_path / "t.csv", "--rows", "5")
    assert code == 0 and "replacing" not in out
    code, out, _ = run_main("make-table", tmp_path / "t.csv", "--rows", "6")
    assert code == 0 and "(replacing the file there)" in out


def test_unknown_option(run_main, tmp_path):
    assert_rejected(run_main("run", tmp_path / "t.csv", "--colour", "red"), "No such option")


def test_rejection_happens_before_any_output_is_written(run_main, tmp_path):
    frame = good_frame().assign(y=1.0)
    path = write(tmp_path / "t.csv", frame)
    out = tmp_path / "run"
    assert_rejected(run_main("run", path, "--target", "y", "--out", out), "is constant")
    assert not out.exists()


def test_predict_without_a_model(run_main, tmp_path):
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("predict", tmp_path, path), "no saved model")


def test_predict_with_missing_feature_columns(run_main, tmp_path):
    model_dir = tmp_path / "best_model"
    model_dir.mkdir()
    (model_dir / "metadata.json").write_text(json.dumps(
        {"family": "xgboost", "feature_names": ["a", "b", "c"], "categories": {}, "target": "y",
         "model_file": "model.json"}))
    path = write(tmp_path / "t.csv", good_frame())
    assert_rejected(run_main("predict", model_dir, path), "lacks 1 feature column(s) the model needs: c")


def test_console_script_exit_code_and_single_line(tmp_path):
    from helpers import cli

    result = cli("run", tmp_path / "absent.parquet", "--target", "y")
    assert result.returncode == 2
    assert result.stderr.strip() == f"trialfuse: error: data file not found: {tmp_path / 'absent.parquet'}"


def test_unreachable_database_storage_is_one_line_at_once(run_main, tmp_path, survivors_csv):
    """Only a table-creation race is retried; a database that refuses the connection is one line, exit 2."""
    import socket

    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install psycopg2-binary)")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_main("run", survivors_csv, "--target", "score", "--out", tmp_path / "run",
                      "--storage", f"postgresql+psycopg2://nobody@127.0.0.1:{port}/none")
    assert_rejected(result, "cannot open --storage", f"127.0.0.1:{port}")
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("20m", 1200.0), ("1.5h", 5400.0),
                                               ("1h30m", 5400.0), ("2d", 172800.0), (45, 45.0)])
def test_durations_read_as_a_user_writes_them(text, seconds):
    from trialfuse.driver.options import parse_duration

    assert parse_duration(text) == seconds


def test_a_storage_is_shown_without_its_password():
    """The resume line names the storage; a database URL's password stays off the screen."""
    from trialfuse.driver.storage import shown

    assert shown("postgresql://ann:secret@db.example:5432/runs") == "postgresql://ann:***@db.example:5432/runs"
    assert shown("runs/x") == "runs/x" and shown("postgresql://db.example/runs") == "postgresql://db.example/runs"
