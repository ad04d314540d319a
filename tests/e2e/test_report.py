"""The report and the NN diagnostics, from a small real run."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from helpers import CLI_CODE, cli
from trialfuse.present.report import SECTIONS
from trialfuse.survivors import make_survivors

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out

LAYER_FIELDS = {"layer", "width", "weight_mean", "weight_std", "weight_abs_max", "activation_mean", "activation_std",
                "dead_fraction", "bn_running_mean", "bn_running_var"}


@pytest.fixture
def small_run(full_run):
    """The session's full run (the NN among its families) and its results."""
    out, _ = full_run
    return out, json.loads((out / "results.json").read_text())


def check_page_sections(out) -> str:
    page = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    return page


def check_page(out) -> str:
    page = check_page_sections(out)
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"comparison", "history", "importances", "folds", "timeline", "diagnostics_training",
            "diagnostics_layers"} <= {name.split("/")[-1][:-4] for name in images}
    for name in images:
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        pixels = imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0  # a real picture, not blank
    return page


def test_every_run_writes_a_report_with_every_section_and_valid_pngs(small_run):
    out, results = small_run
    page = check_page(out)
    assert results["winner"] in page and f"{results['holdout_score']:.4f}" in page
    assert "optuna-dashboard " + str(out / "study.journal") in page


def test_trialfuse_report_rebuilds_it(small_run, tmp_path):
    out = Path(shutil.copytree(small_run[0], tmp_path / "run"))
    (out / "report.html").unlink()
    proc = subprocess.run([sys.executable, "-c", CLI_CODE, "report", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "report.html")
    assert proc.stderr == ""  # no library's log lines (Optuna's "A new study created in memory") on the terminal
    check_page(out)


def test_report_of_a_directory_that_is_not_a_run_is_rejected(tmp_path):
    proc = cli("report", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"trialfuse: error: {tmp_path} is not a finished run directory (no results.json)"


def test_diagnostics_json_describes_every_hidden_layer(small_run):
    out, results = small_run
    diag = json.loads((out / "diagnostics.json").read_text())
    widths = results["families"]["nn"]["best_params"]["hidden_layers"]
    assert [layer["width"] for layer in diag["layers"]] == widths
    for layer in diag["layers"]:
        assert LAYER_FIELDS <= set(layer)
        assert len(layer["bn_running_mean"]) == len(layer["bn_running_var"]) == layer["width"]
        assert 0.0 <= layer["dead_fraction"] <= 1.0
    assert len(diag["epochs"]) == diag["epochs_run"]
    for epoch in diag["epochs"]:
        assert len(epoch["grad_norm"]) == len(widths) + 1  # every hidden layer and the head
        assert epoch["train_loss"] > 0 and epoch["val_loss"] > 0
    assert results["warnings"] == [f"nn: {w}" for w in diag["warnings"]]


def test_a_huge_learning_rate_plants_dead_units_and_the_probe_says_so():
    pytest.importorskip("torch")
    from trialfuse.engine.diagnostics import diagnose

    X, y, _ = make_survivors(1500, 0)
    X, y = X.astype(np.float64), y.astype(np.float64)
    config = {"hidden_layers": [64, 32], "epochs": 60}
    healthy = diagnose({**config, "learning_rate": 1e-3}, X[:1200], y[:1200], X[1200:], y[1200:], seed=0)
    assert not [w for w in healthy["warnings"] if w.startswith("dead units")]
    assert max(layer["dead_fraction"] for layer in healthy["layers"]) < 0.1
    broken = diagnose({**config, "learning_rate": 3.0}, X[:1200], y[:1200], X[1200:], y[1200:], seed=0)
    assert max(layer["dead_fraction"] for layer in broken["layers"]) > 0.9  # Adam's huge steps kill the units
    assert any(w.startswith("dead units") for w in broken["warnings"]), broken["warnings"]
    assert any(w.startswith("no better than the prior") for w in broken["warnings"])


def test_the_python_api_writes_the_report_too(survivors_csv, tmp_path):
    """The report sits above the driver (present/): the CLI and the API build it after the run."""
    import trialfuse

    results = trialfuse.compare_models(trialfuse.RunOptions(data=survivors_csv, target="score", models=["lightgbm"],
                                                            trials=1, folds=2, out=tmp_path / "run", explain=False,
                                                            metric="mae"))
    page = check_page_sections(tmp_path / "run")
    assert (tmp_path / "run" / "report.html").is_file() and results["winner"] in page
    # searched by MAE (regression had R² alone): the summary, the holdout's table and the record say so
    assert "<td>regression; searched by MAE</td>" in page and "<td>prior (mean)</td>" not in page
    assert "<th>prior (median)</th>" in page and set(results["holdout_metrics"]["model"]) == {"r2", "rmse", "mae"}
    assert results["holdout_score"] == pytest.approx(-results["holdout_metrics"]["model"]["mae"], abs=1e-12)
    assert "<td>holdout MAE of the winner</td>" in page and f"<td>{-results['holdout_score']:.4f} (prior " in page



def test_a_run_written_before_tasks_still_gets_its_report(small_run, tmp_path):
    """`trialfuse report` on a run directory from the version before classes: no task or holdout
    metrics in results.json, the probe's val_r2, the explanation's r2 and permutation_r2_drop."""
    out = Path(shutil.copytree(small_run[0], tmp_path / "run"))
    results = json.loads((out / "results.json").read_text())
    for key in ("task", "holdout_metrics"):
        results.pop(key)
    (out / "results.json").write_text(json.dumps(results))
    probe = json.loads((out / "diagnostics.json").read_text())
    probe["val_r2"] = probe.pop("val_score")
    (out / "diagnostics.json").write_text(json.dumps(probe))
    found = json.loads((out / "explain.json").read_text())
    found["r2"] = found.pop("score")
    for feature in found["features"]:
        feature["permutation_r2_drop"] = feature.pop("permutation_drop")
    (out / "explain.json").write_text(json.dumps(found))
    (out / "holdout_predictions.npz").unlink()
    (out / "report.html").unlink()
    proc = cli("report", out)
    assert proc.returncode == 0 and proc.stdout.strip() == str(out / "report.html"), proc.stdout + proc.stderr
    page = (out / "report.html").read_text()
    assert "validation R² " in page and "No holdout metrics recorded" in page
    assert "winner_importance.png" in page and "diagnostics_training.png" in page
