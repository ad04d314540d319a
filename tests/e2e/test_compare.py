"""compare-models end to end, through the CLI as a user runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from helpers import cli, saved_files
from trialfuse.catalog import DEFAULT_MODELS, FAMILIES

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out

RESULT_KEYS = {"status", "best_params", "cv_score_mean", "cv_score_folds", "trials_complete", "trials_failed",
               "trials_pruned", "seconds", "train_seconds"}


def test_results_json_ranks_all_families(full_run):
    out, proc = full_run
    results = json.loads((out / "results.json").read_text())
    assert set(results["families"]) == set(DEFAULT_MODELS)
    for name, fam in results["families"].items():
        assert RESULT_KEYS <= set(fam), name
        assert fam["status"] == "ok" and fam["trials_complete"] == 3
        assert len(fam["cv_score_folds"]) == 3
        assert fam["cv_score_mean"] == pytest.approx(np.mean(fam["cv_score_folds"]))
    scores = [results["families"][f]["cv_score_mean"] for f in results["ranking"]]
    assert scores == sorted(scores, reverse=True) and results["winner"] in (results["ranking"][0], "ensemble")
    assert results["holdout_score"] > 0.1  # the signal is reachable on 600 rows (noise ceiling ~0.48)


def test_results_json_is_the_run_record_whole(full_run):
    """Every key of results.json is a field of the typed record (an unknown key fails to load),
    and reading it back loses nothing."""
    from trialfuse.driver.run_record import RunRecord

    out, _ = full_run
    written = json.loads((out / "results.json").read_text())
    record = RunRecord.read(out)
    assert record.to_json() == written
    best = record.ranking[0]
    assert record.families[best].cv_score_mean == written["families"][best]["cv_score_mean"]


def test_the_nn_probe_and_the_explanation_run_at_once_on_two_workers(full_run):
    out, _ = full_run
    tasks = json.loads((out / "timeline.json").read_text())["tasks"]
    probe, explanation = (next(t for t in tasks if t["what"] == what) for what in ("diagnose", "explain"))
    assert probe["worker"] != explanation["worker"]
    assert probe["start"] < explanation["end"] and explanation["start"] < probe["end"]  # they overlapped


def test_a_trials_fold_scores_are_what_its_model_scores_on_those_rows(full_run, survivors_csv):
    """Independent of the driver: split the table as documented (holdout, then K folds of the
    rest, from --seed), train lightgbm's best params on each fold with the library, score
    the validation rows with scikit-learn; the run's fold R² must be those numbers."""
    from trialfuse.driver.splits import holdout_split, kfold_indices
    from trialfuse.driver.table import load_table
    from trialfuse.engine.families import family_module
    from trialfuse.seeds import model_seed

    out, _ = full_run
    family = json.loads((out / "results.json").read_text())["families"]["lightgbm"]
    table = load_table(survivors_csv, "score")
    rest, sealed = holdout_split(table.rows, 0.2, 0)
    assert not set(rest) & set(sealed)
    X, y = table.X[rest], table.y[rest]
    module = family_module("lightgbm")
    for fold, (train, val) in enumerate(kfold_indices(len(rest), 3, 0)):
        fitted = module.fit(family["best_params"], X[train], y[train], X[val], y[val],
                            seed=model_seed(0, family["best_trial"]), threads=1)
        assert r2_score(y[val], module.predict(fitted.model, X[val])) == pytest.approx(family["cv_score_folds"][fold],
                                                                                       abs=1e-4)


def test_trials_keep_per_fold_scores_in_the_study(full_run):
    import optuna

    out, _ = full_run
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    for family in DEFAULT_MODELS:
        study = optuna.load_study(study_name=family, storage=storage)
        for trial in study.trials:
            assert trial.value == pytest.approx(np.mean(trial.user_attrs["cv_score_folds"]))


def test_holdout_rows_are_sealed_and_recorded(full_run, survivors_csv):
    from trialfuse.driver.splits import kfold_indices

    out, _ = full_run
    holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
    assert len(holdout) == 120 and len(set(holdout)) == 120  # 20% of 600
    search = sorted(set(range(600)) - set(holdout))
    folds = kfold_indices(len(search), 3, 0)
    validated = sorted(int(search[i]) for _, val in folds for i in val)
    assert validated == search  # the folds cover the search rows exactly: no holdout row in any fold
    oof = out / "oof"
    vectors = [np.load(path) for path in oof.glob("*.npy")]
    assert vectors and all(v.shape == (480,) for v in vectors)  # out-of-fold predictions: search rows only
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    assert meta["train_rows"] == 480


def test_metadata_has_what_reuse_and_audit_need(full_run):
    out, _ = full_run
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    for key in ("family", "params", "feature_names", "categories", "target", "cv_score_mean", "holdout_score",
                "libraries"):
        assert key in meta
    assert meta["target"] == "score" and len(meta["feature_names"]) == 62
    assert all((out / "best_model" / f).is_file() for f in saved_files(meta))
    assert meta["libraries"]["optuna"] and meta["libraries"]["numpy"]


def test_predict_on_holdout_reproduces_the_recorded_score(full_run, survivors_csv, tmp_path):
    out, _ = full_run
    results = json.loads((out / "results.json").read_text())
    holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
    table = pd.read_csv(survivors_csv)
    table.iloc[holdout].to_csv(tmp_path / "holdout.csv", index=False)
    proc = cli("predict", out / "best_model", tmp_path / "holdout.csv", "--out", tmp_path / "preds.csv")
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds.columns) == ["prediction"] and len(preds) == len(holdout)
    assert r2_score(table["score"].iloc[holdout], preds["prediction"]) == pytest.approx(results["holdout_score"],
                                                                                      abs=1e-6)


def test_progress_goes_to_stderr_and_the_summary_to_stdout(full_run):
    out, proc = full_run
    winner = json.loads((out / "results.json").read_text())["winner"]
    assert all(family in proc.stderr for family in DEFAULT_MODELS) and f"winner: {winner}" in proc.stdout


def test_the_summary_the_report_and_the_leaderboard_give_one_fold_spread(full_run):
    """A family's spread over its best trial's folds is one figure (numpy's std) wherever it is
    shown; the summary table once said the sample's (ddof 1) beside the report's."""
    import trialfuse

    out, proc = full_run
    results = json.loads((out / "results.json").read_text())
    page = (out / "report.html").read_text()
    board = trialfuse.load(out).leaderboard()
    for name, fam in results["families"].items():
        spread = f"{np.std(fam['cv_score_folds']):.4f}"
        assert spread in proc.stdout and f"<td>{spread}</td>" in page, name
        best = board[(board["family"] == name) & (board["trial"] == fam["best_trial"])]
        assert f"{best['cv_r2_sd'].iloc[0]:.4f}" == spread, name
        assert best["params"].iloc[0] == fam["best_params"], name  # the NN's hidden_layers, not n_layers, width_0


def test_each_family_says_the_compute_its_folds_took(full_run):
    """`train_seconds`: what a family's folds took to train, summed over its trials (the table's
    "train s"); the search's wall time (`seconds`), which every family shared, said nothing of it."""
    import trialfuse

    out, proc = full_run
    results = json.loads((out / "results.json").read_text())
    board = trialfuse.load(out).leaderboard()
    for name, fam in results["families"].items():
        assert 0 < fam["train_seconds"] <= results["workers"] * fam["seconds"], name
        assert fam["train_seconds"] == pytest.approx(board[board["family"] == name]["seconds"].sum()), name
    assert len({round(f["train_seconds"], 1) for f in results["families"].values()}) > 1
    assert "train s" in proc.stdout


def test_quiet_says_nothing(family_run):
    _, proc = family_run("lightgbm")  # the explanation too says nothing
    assert proc.stdout == "" and proc.stderr == ""


def test_quiet_still_says_the_runs_warnings(tmp_path):
    """-q printed nothing at all: a warning (here a code for "unknown") reached results.json only."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=list("abc")).assign(y=lambda f: f.b + f.c)
    frame.loc[:9, "a"] = -999
    frame.to_csv(tmp_path / "t.csv", index=False)
    proc = cli("run", tmp_path / "t.csv", "--target", "y", "--models", "lightgbm", "--trials", "1", "--folds", "2",
               "--no-explain", "--no-ensemble", "--out", tmp_path / "run", "-q")
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("trialfuse: warning: column 'a': -999 (on ") and \
        len(proc.stderr.splitlines()) == 1, proc.stderr  # on the search rows


NATIVE_PREDICT = {
    "nn": "import torch; m = torch.export.load(path).module(); "
          "p = m(torch.as_tensor(X, dtype=torch.float32)).double().numpy()",
    "xgboost": "import xgboost as xgb; b = xgb.Booster(); b.load_model(path); "
               "p = b.predict(xgb.DMatrix(X.astype(np.float32)))",
    "lightgbm": "import lightgbm as lgb; p = lgb.Booster(model_file=path).predict(X)",
    "catboost": "from catboost import CatBoostRegressor; m = CatBoostRegressor(); m.load_model(path); p = m.predict(X)",
    "hgb": "import joblib; p = joblib.load(path).predict(X)",
    "extra_trees": "import joblib; p = joblib.load(path).predict(X)",
    "random_forest": "import joblib; p = joblib.load(path).predict(X)",
}


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_model_loads_with_its_own_library_alone(family, family_run, survivors_csv, tmp_path):
    out, _ = family_run(family)
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    assert meta["family"] == family
    rows = pd.read_csv(survivors_csv).head(50)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert cli("predict", out, tmp_path / "rows.csv", "--out", tmp_path / "p.csv").returncode == 0
    np.save(tmp_path / "X.npy", rows[meta["feature_names"]].to_numpy(np.float64))
    paths = [str(out / "best_model" / f) for f in saved_files(meta)]  # K fold models (--no-refit): their mean
    script = (f"import sys, numpy as np; X = np.load({str(tmp_path / 'X.npy')!r}); ps = []\n"
              f"for path in {paths!r}:\n    {NATIVE_PREDICT[family]}; ps.append(np.asarray(p, dtype=np.float64))\n"
              f"np.save({str(tmp_path / 'native.npy')!r}, np.mean(ps, axis=0)); "
              "assert not any(m.startswith('trialfuse') for m in sys.modules)")
    native = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert native.returncode == 0, native.stderr
    np.testing.assert_allclose(np.load(tmp_path / "native.npy"), pd.read_csv(tmp_path / "p.csv")["prediction"],
                               rtol=1e-6, atol=1e-6)


def test_a_family_that_keeps_failing_is_skipped_not_fatal(survivors_csv, tmp_path):
    env = {**os.environ, "TRIALFUSE_INJECT_FAULT": "fail:xgboost"}
    code = "import sys; from trialfuse.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["run", survivors_csv, "--target", "score", "--models", "xgboost,lightgbm", "--trials", "5",
            "--folds", "2", "--out", tmp_path / "out", "--json", "--no-ensemble", "--no-explain"]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    xgb = results["families"]["xgboost"]
    assert xgb["status"] == "skipped" and "injected fault for xgboost" in xgb["reason"]
    assert xgb["trials_failed"] >= 3 and xgb["trials_complete"] == 0
    assert results["winner"] == "lightgbm" and results["ranking"] == ["lightgbm"]
    meta = json.loads((tmp_path / "out" / "best_model" / "metadata.json").read_text())
    assert meta["family"] == "lightgbm" and all((tmp_path / "out" / "best_model" / f).is_file()
                                                for f in saved_files(meta))


def test_categorical_and_missing_values(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    size = rng.normal(size=n)
    y = np.where(colour == "red", 2.0, 0.0) + size + rng.normal(scale=0.3, size=n)
    colour[::13] = None
    size[::7] = np.nan
    pd.DataFrame({"colour": colour, "size": size, "price": y}).to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "run"
    proc = cli("run", tmp_path / "t.csv", "--target", "price", "--models", "nn,lightgbm", "--trials", "2",
               "--folds", "3", "--out", out, "--json", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["holdout_score"] > 0.5
    meta = json.loads((out / "best_model" / "metadata.json").read_text())
    assert meta["categories"] == {"colour": ["blue", "green", "red"]}
    new = pd.DataFrame({"colour": ["red", "purple", None], "size": [0.0, np.nan, 1.0]})
    new.to_json(tmp_path / "new.json", orient="records")
    proc = cli("predict", out, tmp_path / "new.json")
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_csv(pd.io.common.StringIO(proc.stdout))["prediction"]
    assert len(preds) == 3 and preds.notna().all()


def test_npz_and_parquet_tables(survivors_csv, tmp_path):
    frame = pd.read_csv(survivors_csv)
    np.savez(tmp_path / "t.npz", X=frame.drop(columns="score").to_numpy(), y=frame["score"].to_numpy(),
             feature_names=np.array(frame.columns[:-1]))
    frame.to_parquet(tmp_path / "t.parquet")
    for path, target in ((tmp_path / "t.npz", []), (tmp_path / "t.parquet", ["--target", "score"])):
        out = tmp_path / path.suffix[1:]
        proc = cli("run", path, *target, "--models", "xgboost", "--trials", "1", "--folds", "2", "--out", out,
                   "--json", "--no-explain")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["features"] == 62
        assert json.loads(proc.stdout) == json.loads((out / "results.json").read_text())  # --json: exactly it


@pytest.mark.parametrize(("fuse", "mode"), [("off", "serial"), ("3", "fused")])
def test_fuse_option_reaches_the_nn_trials(survivors_csv, tmp_path, fuse, mode):
    import optuna

    out = tmp_path / "run"
    proc = cli("run", survivors_csv, "--target", "score", "--models", "nn", "--trials", "4", "--folds", "2",
               "--fuse", fuse, "--out", out, "--quiet", "--no-explain")
    assert proc.returncode == 0, proc.stderr
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    trials = optuna.load_study(study_name="nn", storage=storage).trials
    assert len(trials) == 4 and all(t.user_attrs["batch_modes"] == [mode] for t in trials)
    assert json.loads((out / "results.json").read_text())["fuse"] == fuse


def test_a_short_budget_still_saves_the_best_model(survivors_csv, tmp_path):
    import time

    out = tmp_path / "run"
    started = time.monotonic()
    proc = cli("run", survivors_csv, "--target", "score", "--trials", "200", "--folds", "3", "--timeout", "8s",
               "--out", out, "--json")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["budget_exhausted"] is True and results["timeout_seconds"] == 8
    assert sum(f["trials_complete"] for f in results["families"].values()) < 3 * 200
    nn = results["families"]["nn"]  # searched under a budget on a CPU too (it was left out before)
    assert nn["status"] == "ok" or nn["stopped_by_budget"], nn
    assert results["winner"] in (*results["ranking"], "ensemble") and (out / "best_model" / "metadata.json").is_file()
    assert elapsed < 8 + 60  # the budget, plus worker start-up, the last batch in flight and the retrain


def test_the_demo_runs_with_and_without_an_out(run_main, tmp_path, monkeypatch):
    """The README's first command. It wrote its table into the run directory, which the --out
    check then refused as "files that are not a trialfuse run's": every demo failed. A relative
    --out was written as given beside an absolute `data` in results.json."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo"
    code, _, err = run_main("demo", "--rows", "300", "--trials", "1", "--folds", "2", "--out", "demo", "--quiet")
    assert code == 0, err
    assert (out / "results.json").is_file() and not list(out.glob("*.csv"))
    assert json.loads((out / "results.json").read_text())["out"] == str(out.resolve())
    code, printed, err = run_main("demo", "--rows", "300", "--trials", "1", "--folds", "2", "--json",
                                  "--devices", "1")
    assert code == 0, err
    record = json.loads(printed)
    assert Path(record["data"]).parent == Path(record["out"]).parent  # the table beside its run, not in it
