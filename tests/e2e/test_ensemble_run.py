"""The ensemble end to end: chosen on search rows only, saved natively, served by `predict`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from helpers import cli
from trialfuse.catalog import FAMILIES

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out

ARGS = ("--target", "score", "--models", "lightgbm,xgboost", "--trials", "4", "--folds", "3", "--json")


def _run(data, out, *extra, explain: bool = False) -> dict:
    proc = cli("run", data, *ARGS, "--out", out, *extra, *(() if explain else ("--no-explain",)))
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "results.json").read_text())


def _predicted_holdout_score(out, table_path, tmp_path) -> float:
    """The holdout R² of `trialfuse predict` with the run's saved model on its holdout rows."""
    holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
    table = pd.read_csv(table_path)
    table.iloc[holdout].to_csv(tmp_path / "holdout.csv", index=False)
    proc = cli("predict", out, tmp_path / "holdout.csv", "--out", tmp_path / "predictions.csv")
    assert proc.returncode == 0, proc.stderr
    return r2_score(table["score"].iloc[holdout], pd.read_csv(tmp_path / "predictions.csv")["prediction"])


def _native_predictions(family: str, path, X) -> np.ndarray:
    """A saved model file read back with its own library (the two families these runs search)."""
    import lightgbm
    import xgboost

    if family == "xgboost":
        booster = xgboost.Booster()
        booster.load_model(str(path))
        return booster.predict(xgboost.DMatrix(X))
    return lightgbm.Booster(model_file=str(path)).predict(X)


@pytest.fixture(scope="module")
def ensemble_run(survivors_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "out"
    return out, _run(survivors_csv, out, "--refit")


def test_the_ensemble_is_saved_where_the_best_single_model_is_not_clearly_better(ensemble_run):
    out, results = ensemble_run
    record = results["ensemble"]
    assert results["winner"] == "ensemble" and record["chosen"]
    assert record["oof_score"] > record["best_single_inner_oof_score"] - 0.01  # met on the same footing
    assert len(record["members"]) >= 2 and record["method"] in ("caruana", "stack")
    assert record["oof_score"] == max(record["caruana_inner_oof_score"], record["stack_oof_score"])
    if record["method"] == "caruana":  # an average; a stack's weights need not sum to one
        assert sum(m["weight"] for m in record["members"]) == pytest.approx(1.0)
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    assert meta["family"] == "ensemble" and [m["weight"] for m in meta["members"]] == \
        [m["weight"] for m in record["members"]]
    kept = json.loads((out / "oof" / "index.json").read_text())["trials"]
    assert {f: len(t) for f, t in kept.items()} == {"lightgbm": 4, "xgboost": 4}
    assert "refit on all search rows" in (out / "report.html").read_text()  # the report says how it is served
    from rich.console import Console

    from trialfuse.driver.run_record import RunRecord
    from trialfuse.present.progress import comparison_table

    console = Console(width=200, record=True)  # the ensemble's row read as the families' (its folds' mean and
    console.print(comparison_table(RunRecord.read(out)))  # spread), beside the best single model scored so too
    task, folds = RunRecord.read(out).task, record["fold_scores"]
    assert len(folds) == 3 and len(record["best_single_fold_scores"]) == 3
    single = task.show(np.mean(record["best_single_fold_scores"]))
    assert f"{task.show(np.mean(folds))} ± {np.std(folds):.4f} out-of-fold (best single {single})" in \
        console.export_text()
    assert meta["cv_score_mean"] == pytest.approx(np.mean(folds), abs=1e-12) and meta["cv_score_folds"] == folds
    import trialfuse

    board = trialfuse.load(out).leaderboard()
    assert board.iloc[0]["family"] == "ensemble" and board.iloc[0]["cv_r2_mean"] == pytest.approx(np.mean(folds))
    assert board.iloc[0]["cv_r2_sd"] == pytest.approx(np.std(folds))
    narrow = Console(width=80, record=True)  # an 80-column terminal cut the header to "ok/pruned/fa…"
    narrow.print(comparison_table(RunRecord.read(out)))
    text = narrow.export_text()
    assert "failed" in text and "fa…" not in text, text
    page = (out / "report.html").read_text()  # where the single model scores higher, why the ensemble is kept
    assert ("but not clearly" in page) == (record["best_single_inner_oof_score"] > record["oof_score"])


def test_each_member_is_its_librarys_own_file(ensemble_run):

    out, _ = ensemble_run
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    X = np.zeros((3, len(meta["feature_names"])))
    for member in meta["members"]:
        assert _native_predictions(member["family"], out / "best_model" / member["model_file"], X).shape == (3,)


def test_predict_reproduces_the_ensembles_holdout_score(ensemble_run, survivors_csv, tmp_path):
    out, results = ensemble_run
    assert abs(_predicted_holdout_score(out, survivors_csv, tmp_path) - results["holdout_score"]) < 1e-9


def test_scrambled_holdout_targets_change_neither_the_ensemble_nor_its_weights(ensemble_run, survivors_csv,
                                                                                tmp_path):
    out, results = ensemble_run
    holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
    table = pd.read_csv(survivors_csv)
    table.loc[holdout, "score"] = np.random.default_rng(0).permutation(table.loc[holdout, "score"].to_numpy())
    table.to_csv(tmp_path / "scrambled.csv", index=False)
    again = _run(tmp_path / "scrambled.csv", tmp_path / "out", "--refit")

    def chosen(record):
        return ([(m["family"], m["trial"], m["weight"]) for m in record["members"]], record["oof_score"],
                record["stack_oof_score"], record.get("stack"))

    assert chosen(again["ensemble"]) == chosen(results["ensemble"])
    assert again["holdout_score"] != results["holdout_score"]  # the holdout did change, and only scored


def test_no_ensemble_saves_the_best_single_model_and_keeps_no_predictions(survivors_csv, tmp_path):
    results = _run(survivors_csv, tmp_path / "out", "--no-ensemble", "--trials", "2", "--refit")
    assert results["winner"] == results["ranking"][0] and results["ensemble"] is None
    assert not (tmp_path / "out" / "oof").exists()
    results = _run(survivors_csv, tmp_path / "folds", "--no-ensemble", "--trials", "2")  # served by its folds:
    meta = json.loads((tmp_path / "folds" / "best_model" / "metadata.json").read_text())  # they are kept
    assert results["ensemble"] is None and meta["family"] == results["winner"] and len(meta["model_files"]) == 3


@pytest.fixture(scope="module")
def fold_served_run(survivors_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("fold-served") / "out"
    return out, _run(survivors_csv, out, "--no-refit", explain=True)


def test_without_refit_the_saved_models_are_the_searchs_fold_models_and_predict_reproduces_them(
        fold_served_run, survivors_csv, tmp_path):
    out, results = fold_served_run
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    served = meta["members"] if meta["family"] == "ensemble" else [meta]
    X = np.zeros((3, len(meta["feature_names"])))
    if meta["family"] == "ensemble":
        assert "mean of its 3 fold models" in (out / "report.html").read_text()
    for member in served:
        assert len(member["model_files"]) == 3  # one per fold, each its library's own file
        for name in member["model_files"]:
            assert _native_predictions(member["family"], out / "best_model" / name, X).shape == (3,)
    kept = json.loads((out / "oof" / "index.json").read_text())["trials"]
    assert sorted(p.name for p in (out / "oof" / "models").iterdir()) == sorted(
        f"{family}-{trial}" for family, trials in kept.items() for trial in trials)
    assert abs(_predicted_holdout_score(out, survivors_csv, tmp_path) - results["holdout_score"]) < 1e-9
    explanation = json.loads((out / "explain.json").read_text())  # the same model explained, SHAP included
    assert abs(explanation["score"] - results["holdout_score"]) < 1e-9 and explanation["shap"]


def test_the_benchs_extra_candidate_screen_rebuilds_the_runs_own_selection(fold_served_run, monkeypatch):
    """bench/extra_candidates.py scores one more model against a finished run's ensemble; its
    'before' must be the run's own choice, to the last digit, or its 'after' means nothing."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "bench"))
    from extra_candidates import Run

    out, results = fold_served_run
    run = Run(out)
    before, record = run.ensembles(), results["ensemble"]
    assert before["average_inner_oof"] == pytest.approx(record["caruana_inner_oof_score"], abs=1e-12)
    assert before["stack_inner_oof"] == pytest.approx(record["stack_oof_score"], abs=1e-12)
    if results["winner"] == "ensemble":
        saved = before["average_holdout" if record["method"] == "caruana" else "stack_holdout"]
        assert saved == pytest.approx(results["holdout_score"], abs=1e-9)
    if record["method"] == "caruana":  # the same members and weights, from the same first pick
        assert before["weights"] == pytest.approx({f"{m['family']}-{m['trial']}": m["weight"]
                                                   for m in record["members"]}, abs=1e-12)
    added = run.fit("lightgbm", FAMILIES["lightgbm"].start[1])
    assert len(run.oof) == 9 and added["oof_score"] > 0.0  # the 8 kept and this one, fit on rows that match


def test_a_rerun_with_fewer_models_ensembles_those_alone(ensemble_run, tmp_path):
    """Rerun in the same directory with `--models lightgbm`: the saved stack was four catboost
    models (one lightgbm at weight 0) of the earlier run's, while every output named lightgbm alone."""
    import shutil

    out = Path(shutil.copytree(ensemble_run[0], tmp_path / "run"))
    assert "xgboost" in {m["family"] for m in ensemble_run[1]["ensemble"]["members"]}  # both families were in it
    proc = cli("run", ensemble_run[1]["data"], *ARGS[:2], "--models", "lightgbm", *ARGS[4:], "--out", out,
               "--refit", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["ranking"] == ["lightgbm"]
    members = results["ensemble"]["members"] if results["winner"] == "ensemble" else [{"family": results["winner"]}]
    assert {m["family"] for m in members} == {"lightgbm"}
