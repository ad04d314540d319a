"""The winner explained: explain.json, the top features in the metadata, the report's
"The winner", `trialfuse explain` on new rows, and `--no-explain`."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from helpers import cli

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out


@pytest.fixture
def tree_run(family_run, tmp_path):
    """A copy of the session's lightgbm run (these tests explain it again)."""
    return Path(shutil.copytree(family_run("lightgbm")[0], tmp_path / "tree"))


def test_a_run_explains_its_winner_on_the_holdout(tree_run):
    found = json.loads((tree_run / "explain.json").read_text())
    assert found["rows_from"].startswith("the sealed holdout (120 rows)") and found["rows_used"] == 120
    assert len(found["features"]) == 62 and found["shap"].startswith("TreeSHAP")
    meta = json.loads((tree_run / "best_model" / "metadata.json").read_text())
    assert [f["name"] for f in meta["top_features"]] == [f["name"] for f in found["features"][:10]]
    page = (tree_run / "report.html").read_text()
    assert '<section id="winner">' in page
    for image in ("winner_fit", "winner_importance", "winner_partial_dependence"):
        assert f"report_files/{image}.png" in page and (tree_run / "report_files" / f"{image}.png").is_file()


def test_explain_holds_its_time_limit_and_says_what_would_fit(tree_run):
    """`trialfuse explain` had no limit: a run's warning sent the user to it, and on 8,000
    columns it ran about an hour, saying nothing."""
    proc = cli("explain", tree_run, "--seconds", "0.001")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("trialfuse: error: no explanation within 0.001 s: ") and \
        re.search(r"; a limit of (about \d+ s|a longer one) \(--seconds, or seconds= in Python\) waits for it$",
                  proc.stderr.strip()), proc.stderr
    assert cli("explain", tree_run, "--seconds", "0").returncode == 2


def test_explain_on_new_rows_rebuilds_the_report(tree_run, survivors_csv, tmp_path):
    rows = pd.read_csv(survivors_csv).head(80)
    rows.to_csv(tmp_path / "new.csv", index=False)
    holdout_top = json.loads((tree_run / "best_model" / "metadata.json").read_text())["top_features"]
    proc = cli("explain", tree_run, "--table", tmp_path / "new.csv")
    assert proc.returncode == 0, proc.stderr
    found = json.loads((tree_run / "explain.json").read_text())
    sealed = json.loads((tree_run / "holdout_indices.json").read_text())["holdout_rows"]
    trained = 80 - sum(row < 80 for row in sealed)  # the run's own first rows: most were trained on, and it says so
    assert found["rows_from"] == (f"{tmp_path / 'new.csv'} (80 rows; {trained} of them the model was trained on, "
                                  "where its scores read high)") and found["rows_used"] == 80
    assert "new.csv (80 rows" in (tree_run / "report.html").read_text()
    meta = json.loads((tree_run / "best_model" / "metadata.json").read_text())
    assert meta["top_features"] == holdout_top  # the saved model's record stays the holdout's
    assert proc.stdout.startswith(f"explained on {found['rows_from']}; how much the R² worsens when one feature "
                                  "is shuffled: ")
    fresh = pd.read_csv(survivors_csv).head(5).assign(**{c: 0.5 for c in rows.columns[:3]})
    fresh.to_csv(tmp_path / "fresh.csv", index=False)
    assert cli("explain", tree_run, "--table", tmp_path / "fresh.csv").returncode == 0
    assert json.loads((tree_run / "explain.json").read_text())["rows_from"] == f"{tmp_path / 'fresh.csv'} (5 rows)"
    no_target = rows.drop(columns=["score"])
    no_target.loc[0, "f00"] = float("inf")  # taken as missing, which predict says: after the refusal, that is never
    no_target.to_csv(tmp_path / "no_target.csv", index=False)
    refused = cli("explain", tree_run, "--table", tmp_path / "no_target.csv")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"trialfuse: error: {tmp_path / 'no_target.csv'} has no column 'score': the explanation scores predictions "
        "against it"], refused.stderr
    again = cli("explain", tree_run)  # back to the holdout
    assert again.returncode == 0, again.stderr
    assert json.loads((tree_run / "explain.json").read_text())["rows_from"].startswith("the sealed holdout")


def test_no_explain_and_an_nn_winner(family_run):
    off, _ = family_run("hgb")  # run with --no-explain
    assert not (off / "explain.json").exists()
    assert "Not explained" in (off / "report.html").read_text()
    nn, _ = family_run("nn")
    found = json.loads((nn / "explain.json").read_text())
    assert found["shap"] is None and len(found["features"]) == 62
    assert "report_files/winner_importance.png" in (nn / "report.html").read_text()


def test_explaining_later_clears_the_runs_no_explanation_warning(tree_run):
    """A run whose budget left no time to explain says so; `trialfuse explain` then filled in
    "The winner" while the summary (and results.json) still said it was missing."""
    results = json.loads((tree_run / "results.json").read_text())
    stale = f"no explanation of the winner in the time budget: no time left (`trialfuse explain {tree_run}` adds it)"
    results["warnings"] = [*results["warnings"], stale, "another warning"]
    (tree_run / "results.json").write_text(json.dumps(results))
    assert cli("explain", tree_run).returncode == 0
    after = json.loads((tree_run / "results.json").read_text())
    assert stale not in after["warnings"] and "another warning" in after["warnings"]
    page = (tree_run / "report.html").read_text()
    assert "no explanation of the winner" not in page and "another warning" in page
