"""Classes end to end: a binary run from the CLI on a table with text columns and missing values,
a multiclass fit from a DataFrame through the notebook API; each saved model, served by `predict`, reproduces the
holdout score the run recorded, and the report shows what classes need."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import trialfuse
from helpers import cli
from trialfuse.catalog import CLASS_STARTS
from trialfuse.errors import UserError
from trialfuse.predict import predict_table
from trialfuse.survivors import make_survivor_bands
from trialfuse.task import Task

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out


def _table(bands: int, rows: int = 600) -> pd.DataFrame:
    """The reference table's banded version, a text column that carries part of the signal, and
    missing values in both kinds of column."""
    X, labels, names = make_survivor_bands(rows, seed=0, bands=bands)
    numbers = [j for j in range(12) if j != 3]
    frame = pd.DataFrame(X[:, numbers], columns=[names[j] for j in numbers])
    frame["region"] = np.where(X[:, 3] > 0.5, "north", "south")  # f03 enters the signal as this threshold
    frame.loc[::17, "region"] = None
    frame.loc[::13, "f00"] = np.nan
    frame["outcome"] = labels
    return frame


def _holdout_score(out, table_path, task: Task) -> tuple[float, pd.DataFrame]:
    """The search metric of the saved model served by `predict` on the run's holdout rows."""
    holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
    table = pd.read_parquet(table_path) if str(table_path).endswith(".parquet") else pd.read_csv(table_path)
    predicted = predict_table(out, table_path).iloc[holdout]
    probabilities = predicted[[f"probability_{c}" for c in task.classes]].to_numpy()
    return task.score(task.encode(table["outcome"].iloc[holdout]), probabilities), predicted


def test_a_binary_run_with_text_and_missing_values_end_to_end(tmp_path):
    frame = _table(bands=2)
    frame["outcome"] = frame["outcome"].map({"low": "no", "high": "yes"})
    data = tmp_path / "binary.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "run"
    proc = cli("run", data, "--target", "outcome", "--trials", "1", "--folds", "3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # rich folds long lines to the terminal's width
    assert "task: binary classification of 'outcome' (2 classes: 'no', 'yes'; searched by log-loss)" in said
    results = json.loads((out / "results.json").read_text())
    task = Task.from_json(results["task"])
    assert task.classes == ("no", "yes") and task.metric_name == "log_loss"
    assert all(results["families"][f]["status"] == "ok" for f in ("nn", "xgboost", "lightgbm", "catboost"))
    assert results["families"]["lightgbm"]["best_params"] == CLASS_STARTS["lightgbm"][0]  # the classes' own start
    assert results["ensemble"]["candidates"] >= 4
    metrics = results["holdout_metrics"]
    assert metrics["model"]["log_loss"] == pytest.approx(-results["holdout_score"], abs=1e-12)
    assert metrics["prior"]["log_loss"] == pytest.approx(np.log(2), abs=0.01)  # half and half: the base rate
    assert metrics["model"]["log_loss"] < metrics["prior"]["log_loss"] - 0.02 and metrics["model"]["roc_auc"] > 0.65
    score, predicted = _holdout_score(out, data, task)
    assert score == pytest.approx(results["holdout_score"], abs=1e-9)  # the saved model is the scored one
    assert set(predicted["prediction"]) <= {"no", "yes"}
    np.testing.assert_allclose(predicted[["probability_no", "probability_yes"]].sum(axis=1), 1.0, atol=1e-6)
    page = (out / "report.html").read_text()
    assert "Confusion matrix" in page and "prior (class shares)" in page
    assert "<td>binary (no, yes); searched by log-loss</td>" in page  # the summary once said "binary" alone
    import lightgbm  # the text column reached LightGBM as a category, split as a set of levels

    names = json.loads((out / "best_model" / "metadata.json").read_text())["feature_names"]
    kept = lightgbm.Booster(model_file=str(next(out.rglob("lightgbm-*/**/model.txt"))))
    infos = kept.dump_model()["feature_infos"]
    kinds = {name: bool(infos[f"Column_{i}"]["values"]) for i, name in enumerate(names)}  # levels: a category
    assert [name for name, category in kinds.items() if category] == ["region"]
    assert (out / "report_files" / "holdout_roc.png").exists()
    explanation = json.loads((out / "explain.json").read_text())
    assert explanation["metric"] == "log-loss" and explanation["features"][0]["permutation_drop"] > 0
    written = tmp_path / "predictions.csv"
    assert cli("predict", out, data, "--out", written).returncode == 0
    assert list(pd.read_csv(written).columns) == ["prediction", "probability_no", "probability_yes"]
    # rows whose label is no class of the model are named and left out, not dropped silently (a new user's find)
    some = frame.head(60).assign(outcome=lambda f: f["outcome"].where(f.index % 6 > 0, "maybe"))
    some.to_csv(tmp_path / "some.csv", index=False)
    said = cli("explain", out, "--table", tmp_path / "some.csv")
    assert said.returncode == 0 and "10 row(s) have a target that is no class of this model ('maybe'; its classes: " \
        "'no', 'yes'); those rows are left out" in " ".join(said.stderr.split())
    some.assign(outcome=frame["outcome"].head(60).str.upper()).to_csv(tmp_path / "upper.csv", index=False)
    said = cli("explain", out, "--table", tmp_path / "upper.csv")  # "fewer than 2 rows with a target value" before
    assert said.returncode == 2 and "60 row(s) have a target that is no class of this model ('NO', 'YES'; its " \
        "classes: 'no', 'yes'), and fewer than 2 rows are left" in " ".join(said.stderr.split())


def test_a_multiclass_fit_from_a_dataframe_reloads_in_a_fresh_process_and_predicts_as_the_cli(tmp_path):
    """The notebook API on classes: a DataFrame with text and missing values in, a Model out
    (class weights, another search metric); loaded again in a fresh process it predicts what
    `trialfuse predict` writes for the same rows, and what the run scored on its holdout."""
    frame = _table(bands=4)
    rare = frame.index[(frame["outcome"] == "band-4") & (frame.index % 3 != 0)]
    frame = frame.drop(rare).reset_index(drop=True)  # band-4 now a rare class
    model = trialfuse.fit(frame, "outcome", models=["lightgbm", "nn"], trials=2, folds=3, class_weight="balanced",
                          metric="balanced_accuracy", out=tmp_path / "run", explain=False, quiet=True)
    task, results = model.task, model.results
    assert task.kind == "multiclass" and task.class_weight == "balanced" and len(task.classes) == 4
    assert results["data"] == str(tmp_path / "run" / "data.parquet")  # the DataFrame, kept with the run
    rows = tmp_path / "rows.parquet"
    frame.drop(columns="outcome").to_parquet(rows)
    proc = cli("predict", tmp_path / "run", rows, "--out", tmp_path / "cli.csv")
    assert proc.returncode == 0, proc.stderr
    written = pd.read_csv(tmp_path / "cli.csv")
    code = ("import json, sys, pandas as pd, trialfuse; m = trialfuse.load(sys.argv[1]); "
            "rows = pd.read_parquet(sys.argv[2]); "
            "print(json.dumps({'labels': m.predict(rows).tolist(), 'p': m.predict_proba(rows).to_numpy().tolist()}))")
    fresh = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), str(rows)], capture_output=True,
                           text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    again = json.loads(fresh.stdout)
    assert again["labels"] == written["prediction"].tolist() == model.predict(frame).tolist()
    probabilities = written[[f"probability_{c}" for c in task.classes]].to_numpy()
    np.testing.assert_array_equal(np.array(again["p"]), probabilities)
    np.testing.assert_array_equal(model.predict_proba(frame).to_numpy(), probabilities)
    score, _ = _holdout_score(tmp_path / "run", tmp_path / "run" / "data.parquet", task)
    assert score == pytest.approx(results["holdout_score"], abs=1e-9)
    assert results["holdout_metrics"]["model"]["balanced_accuracy"] > results["holdout_metrics"]["prior"][
        "balanced_accuracy"] + 0.05
    assert (written["prediction"] == "band-4").sum() > 0  # weighted: the rare class is predicted too
    board = model.leaderboard()
    assert list(board.columns) == ["family", "trial", "state", "cv_balanced_accuracy_mean", "cv_balanced_accuracy_sd",
                                   "holdout_balanced_accuracy", "seconds", "params"]
    assert sorted(board["family"][board["family"] != "ensemble"]) == ["lightgbm", "lightgbm", "nn", "nn"]
    assert (board["family"] == "ensemble").sum() == int(bool(results["ensemble"]["chosen"]))
    assert not results["ensemble"]["chosen"] or board["family"].iloc[0] == "ensemble"  # the saved model first
    done = board[board["state"] == "complete"]["cv_balanced_accuracy_mean"]
    assert done.iloc[0] == done.max() == max(results["families"][f]["cv_score_mean"] for f in ("lightgbm", "nn"))
    kept = (tmp_path / "run" / "data.parquet").read_bytes()
    # a rerun on other rows is refused, and leaves the run as it was
    with pytest.raises(UserError, match="search made with another"):
        trialfuse.fit(frame.iloc[:-3], "outcome", models=["lightgbm", "nn"], trials=2, folds=3,
                      class_weight="balanced", metric="balanced_accuracy", out=tmp_path / "run", quiet=True)
    assert (tmp_path / "run" / "data.parquet").read_bytes() == kept


def test_a_multiclass_run_with_a_rare_class_searches_8_folds_and_one_without_5(tmp_path):
    """K as the run takes it (options.folds_of through compare_models): 8 folds where a class
    has fewer than RARE_CLASS_ROWS rows, the multiclass default of 5 where none has."""
    from trialfuse.task import RARE_CLASS_ROWS

    frame = _table(bands=3, rows=3 * RARE_CLASS_ROWS + 300)
    rare = frame.index[(frame["outcome"] == "band-3") & (frame.index % 4 != 0)]
    folds = {}
    for name, table in (("rare", frame.drop(rare)), ("common", frame)):
        table.to_csv(tmp_path / f"{name}.csv", index=False)
        proc = cli("run", tmp_path / f"{name}.csv", "--target", "outcome", "--models", "lightgbm", "--trials", "1",
                   "--out", tmp_path / name, "--quiet")
        assert proc.returncode == 0, proc.stderr
        folds[name] = json.loads((tmp_path / name / "results.json").read_text())["folds"]
    assert frame.drop(rare)["outcome"].value_counts().min() < RARE_CLASS_ROWS <= frame["outcome"].value_counts().min()
    assert folds == {"rare": 8, "common": 5}
