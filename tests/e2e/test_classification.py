"""Classes end to end: a binary run from the CLI on a table with text columns and missing values,
a multiclass run from the Python API; each saved model, served by `predict`, reproduces the
holdout score the run recorded, and the report shows what classes need."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import cli
from trialfuse.api import compare_models
from trialfuse.driver.options import RunOptions
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
    table = pd.read_csv(table_path)
    predicted = predict_table(out, table_path).iloc[holdout]
    probabilities = predicted[[f"probability_{c}" for c in task.classes]].to_numpy()
    return task.score(task.encode(table["outcome"].iloc[holdout]), probabilities), predicted


def test_a_binary_run_with_text_and_missing_values_end_to_end(tmp_path):
    frame = _table(bands=2)
    frame["outcome"] = frame["outcome"].map({"low": "no", "high": "yes"})
    data = tmp_path / "binary.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "run"
    proc = cli("run", data, "--target", "outcome", "--trials", "2", "--folds", "3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # rich folds long lines to the terminal's width
    assert "task: binary classification of 'outcome' (2 classes: 'no', 'yes'; searched by log-loss)" in said
    results = json.loads((out / "results.json").read_text())
    task = Task.from_json(results["task"])
    assert task.classes == ("no", "yes") and task.metric_name == "log_loss"
    assert all(results["families"][f]["status"] == "ok" for f in ("nn", "xgboost", "lightgbm", "catboost"))
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
    assert "Confusion matrix" in page and "prior (base rate)" in page
    assert (out / "report_files" / "holdout_roc.png").exists()
    explanation = json.loads((out / "explain.json").read_text())
    assert explanation["metric"] == "log-loss" and explanation["features"][0]["permutation_drop"] > 0
    written = tmp_path / "predictions.csv"
    assert cli("predict", out, data, "--out", written).returncode == 0
    assert list(pd.read_csv(written).columns) == ["prediction", "probability_no", "probability_yes"]


def test_a_multiclass_run_from_the_python_api_with_class_weights_and_another_metric(tmp_path):
    frame = _table(bands=4)
    rare = frame.index[(frame["outcome"] == "band-4") & (frame.index % 3 != 0)]
    frame = frame.drop(rare).reset_index(drop=True)  # band-4 now a rare class
    data = tmp_path / "bands.csv"
    frame.to_csv(data, index=False)
    options = dict(data=data, target="outcome", models=["lightgbm", "nn"], folds=3, class_weight="balanced",
                   metric="balanced_accuracy", out=tmp_path / "run", explain=False)
    compare_models(RunOptions(**options, trials=1))
    record = compare_models(RunOptions(**options, trials=2))  # resumed: one more trial per family
    for family in ("lightgbm", "nn"):
        done = record["families"][family]
        assert done["trials_complete"] + done["trials_pruned"] + done["trials_failed"] == 2
    task = Task.from_json(record["task"])
    assert task.kind == "multiclass" and task.class_weight == "balanced" and len(task.classes) == 4
    score, predicted = _holdout_score(tmp_path / "run", data, task)
    assert score == pytest.approx(record["holdout_score"], abs=1e-9)
    assert record["holdout_metrics"]["model"]["balanced_accuracy"] > record["holdout_metrics"]["prior"][
        "balanced_accuracy"] + 0.05
    assert (predicted["prediction"] == "band-4").sum() > 0  # weighted: the rare class is predicted too
