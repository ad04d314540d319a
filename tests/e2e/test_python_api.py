"""The notebook API's checks and its scikit-learn estimators (the fit from a DataFrame, reloaded
in a fresh process, is in test_classification.py; the tour notebook in test_docs.py)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

import trialfuse
from trialfuse.errors import UserError
from trialfuse.survivors import make_survivor_bands, make_survivors

FAST = dict(models=["lightgbm"], trials=1, timeout="30s", folds=2, ensemble=False)  # a real run, one trial


def good_frame() -> pd.DataFrame:
    X, y, names = make_survivors(120, seed=0)
    return pd.DataFrame(X[:, :4], columns=names[:4]).assign(y=y)


@pytest.mark.parametrize("change, options, cli_args, words", [
    (lambda f: f, {"target": "price"}, ["--target", "price"], "target column 'price' not found in"),
    (lambda f: f.iloc[:0], {}, [], "has no rows"),
    (lambda f: f.assign(y=["high"] * 119 + [np.nan]), {"task": "regression"}, ["--task", "regression"],
     "missing or infinite value"),
    (lambda f: f.assign(y=["high", "low", "mid", "x"] * 30), {"task": "regression"}, ["--task", "regression"],
     "target column 'y' is not numeric (e.g. 'high'): --task regression needs numbers"),
])
def test_bad_input_through_the_api_is_the_clis_one_line_before_training(run_main, tmp_path, change, options,
                                                                         cli_args, words):
    frame = change(good_frame())
    target = options.pop("target", "y")
    with pytest.raises(UserError) as raised:
        trialfuse.fit(frame, target, out=tmp_path / "api", quiet=True, **options)
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, _, err = run_main("run", tmp_path / "t.csv", "--target", target, *cli_args, "--out", tmp_path / "cli")
    assert code == 2 and words in str(raised.value) and words in err, (str(raised.value), err)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "api" / "results.json").exists()


def test_the_estimators_take_sparse_x_and_refuse_a_short_y_in_scikit_learns_words(tmp_path):
    """A sparse X (a OneHotEncoder's output) was "X must be 2-D, got shape ()"; a y one row short a
    pandas "Length of values" error; each refused fit left an empty run folder behind."""
    from scipy import sparse

    from trialfuse import TrialfuseRegressor

    X, y, _ = make_survivors(200, seed=0)
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match="inconsistent numbers of samples: \\[200, 199\\]"):
        TrialfuseRegressor(**FAST, runs=runs).fit(X[:, :6], y[:-1])
    with pytest.raises(UserError, match="constant"):
        TrialfuseRegressor(**FAST, runs=runs).fit(X[:, :6], np.ones(200))
    assert not runs.exists() or not list(runs.iterdir())
    fitted = TrialfuseRegressor(**FAST, runs=runs).fit(sparse.csr_matrix(X[:, :6]), y)  # a OneHotEncoder's output
    np.testing.assert_array_equal(fitted.predict(sparse.csr_matrix(X[:5, :6])), fitted.predict(X[:5, :6]))


def test_dir_lists_the_names_that_load_on_first_use():
    """A new user's find: dir(trialfuse) was ['annotations', 'importlib'], so a notebook completed nothing."""
    assert {"fit", "load", "Model", "TrialfuseClassifier", "TrialfuseRegressor", "predict_table"} <= set(dir(trialfuse))


def test_an_unknown_option_names_the_options_there_are():
    with pytest.raises(UserError, match="unknown option 'budget' \\(the options are task, metric, class_weight"):
        trialfuse.fit(good_frame(), "y", budget="60s")
    with pytest.raises(UserError, match="X must be 2-D"):
        trialfuse.fit(np.zeros(5), y=np.zeros(5))
    with pytest.raises(UserError, match="not a finished run directory"):
        trialfuse.load("nowhere")


def test_estimators_clone_cross_validate_and_sit_in_a_pipeline(tmp_path):
    from sklearn.base import clone
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from trialfuse import TrialfuseRegressor

    regressor = TrialfuseRegressor(**FAST, runs=tmp_path / "runs")
    twin = clone(regressor)
    assert twin.get_params() == regressor.get_params() and twin is not regressor
    assert clone(regressor.set_params(trials=2)).get_params()["trials"] == 2
    regressor.set_params(trials=1)
    X, y, _ = make_survivors(300, seed=0)
    scores = cross_val_score(regressor, X[:, :8], y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and scores.mean() > 0.0
    assert len(list((tmp_path / "runs").iterdir())) == 3  # a run directory per fit, none shared
    grid = GridSearchCV(regressor, {"trials": [1, 2]}, cv=2).fit(X[:, :8], y)  # over the budget: 2 x 2 fits + refit
    assert grid.best_params_["trials"] in (1, 2) and np.isfinite(grid.score(X[:, :8], y))
    with pytest.raises(ValueError, match="X has 9 features, but TrialfuseRegressor is expecting 8 features"):
        grid.best_estimator_.predict(X[:, :9])  # scikit-learn's words, not pandas' "Length mismatch"
    frame = pd.DataFrame(X[:, :6], columns=[f"f{i}" for i in range(6)]).assign(
        region=np.where(X[:, 3] > 0.5, "north", "south"))
    pipeline = Pipeline([("encode", ColumnTransformer([("region", OneHotEncoder(), ["region"])],
                                                      remainder="passthrough")),
                         ("search", TrialfuseRegressor(**FAST, runs=tmp_path / "pipeline"))])
    pipeline.fit(frame.iloc[:240], y[:240])
    assert pipeline.predict(frame.iloc[240:]).shape == (60,) and np.isfinite(pipeline.score(frame.iloc[240:], y[240:]))
    model = grid.best_estimator_.model_
    np.testing.assert_array_equal(model.predict(X[:5, :8]), grid.predict(X[:5, :8]))  # X as an array, as fit took it
    # fit on an array, asked with pd.DataFrame(X): its columns by position (pandas numbers them 0, 1, ...
    # where fit named them x0, x1, ...); it was refused as missing columns x0 ... x7
    np.testing.assert_array_equal(model.predict(pd.DataFrame(X[:5, :8])), grid.predict(X[:5, :8]))
    np.testing.assert_array_equal(grid.predict(pd.DataFrame(X[:5, :8])), grid.predict(X[:5, :8]))


def test_the_classifier_orders_classes_as_scikit_learn_and_its_runs_read_from_anywhere(tmp_path, monkeypatch):
    """`classes_` is sorted as scikit-learn sorts labels (its scorers index predict_proba's
    columns by it), whatever order trialfuse keeps; a feature named "target" stays a feature;
    a run under a relative `runs` loads and explains from another working directory."""
    from sklearn.metrics import get_scorer

    from trialfuse import TrialfuseClassifier

    X, bands, names = make_survivor_bands(300, seed=0, bands=2)
    labels = np.where(bands == "high", "10", "9")  # trialfuse reads them in number order, scikit-learn as text
    frame = pd.DataFrame(X, columns=names).rename(columns={names[0]: "target"})
    frame["region"] = np.where(X[:, 3] > 0.5, "north", "south")
    monkeypatch.chdir(tmp_path)
    classifier = TrialfuseClassifier(**FAST, runs="classes").fit(frame, labels)
    assert list(classifier.classes_) == ["10", "9"] and classifier.model_.task.classes == ("9", "10")
    probabilities = classifier.predict_proba(frame.iloc[:10])
    np.testing.assert_array_equal(probabilities, classifier.model_.predict_proba(frame.iloc[:10])[["10", "9"]])
    assert probabilities.shape == (10, 2) and np.allclose(probabilities.sum(axis=1), 1)
    assert set(classifier.predict(frame.iloc[:10])) <= {"9", "10"} and 0.5 < classifier.score(frame, labels) <= 1
    assert get_scorer("roc_auc")(classifier, frame, labels) > 0.75  # the scorer reads the columns by classes_
    record = classifier.model_.record
    assert record.features == len(names) + 1 and record.target not in names and "target" in frame.columns
    west = frame.iloc[:2].assign(region="west")
    for predicting in (classifier.predict, classifier.model_.predict_proba,  # the CLI said so; the API said nothing
                       lambda rows: trialfuse.predict_table(classifier.model_.run_dir, rows)):
        with pytest.warns(trialfuse.DataWarning, match="column 'region': 2 value\\(s\\) not seen in training") as seen:
            predicting(west)
        assert seen[0].filename == __file__  # the user's line, not one deep in trialfuse
    run = classifier.model_.run_dir
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    travelled = pickle.loads(pickle.dumps(classifier))  # its run under the relative `runs`, read from elsewhere
    np.testing.assert_array_equal(travelled.predict(frame.iloc[:5]), classifier.predict(frame.iloc[:5]))
    again = trialfuse.load(run)
    assert len(again.leaderboard()) == 1 and again.leaderboard()["state"].tolist() == ["complete"]
    assert len(again.explain()["importance"]) == len(names) + 1
    monkeypatch.chdir(tmp_path)
    weighed = TrialfuseClassifier(**FAST, runs="weighed", class_weight="balanced").fit(frame, labels)
    assert weighed.model_.task.class_weight == "balanced"  # as --class-weight (the estimator had no such parameter)


@pytest.mark.parametrize("check", ["check_no_attributes_set_in_init", "check_parameters_default_constructible",
                                   "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
                                   "check_estimator_repr", "check_do_not_raise_errors_in_init_or_set_params",
                                   "check_estimator_tags_renamed"])
@pytest.mark.parametrize("kind", ["TrialfuseRegressor", "TrialfuseClassifier"])
def test_scikit_learns_estimator_checks_that_need_no_fit_pass(check, kind):
    """The construction and parameter checks of scikit-learn's suite; those that fit many tiny
    arrays do not apply to a whole run (trialfuse/estimators.py says which and why)."""
    from sklearn.utils import estimator_checks

    estimator = getattr(trialfuse, kind)()
    getattr(estimator_checks, check)(kind, estimator)


def test_the_leaderboard_ranks_finished_trials_above_pruned_and_failed_ones(family_run, tmp_path):
    """A pruned trial's value is its score on the folds it reached (one fold on a tiny table can
    beat every finished trial's mean), so it ranks below the finished ones, however good."""
    import shutil

    import optuna

    from trialfuse.driver.storage import open_storage

    ran, _ = family_run("lightgbm")
    run = tmp_path / "run"
    shutil.copytree(ran, run)
    model = trialfuse.load(run)
    storage = open_storage(model.record.storage_at(run), run)
    study = optuna.load_study(study_name="lightgbm", storage=storage)
    finished = study.best_trial.value
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=finished + 1.0,
                                              intermediate_values={0: finished + 1.0},
                                              user_attrs={"cv_score_folds": [finished + 1.0]}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    study.enqueue_trial({"num_leaves": 31})  # a start queued and never trained: it was a row of empty params
    board = trialfuse.load(run).leaderboard()
    assert board["state"].tolist() == ["complete", "pruned", "fail"]
    assert np.isnan(board["cv_r2_sd"].iloc[1])  # one fold has no spread (it read 0.0)
    assert str(board["trial"].dtype) == "Int64" and all(type(t) is int for t in board["trial"].tolist())  # not 0.0
    assert board["cv_r2_mean"].iloc[1] > board["cv_r2_mean"].iloc[0]  # better so far, and still below
    assert board["seconds"].iloc[0] > 0 and np.isnan(board["seconds"].iloc[2])  # no fold came back: not 0.0 s


def test_an_array_given_to_a_model_fit_on_named_columns_is_refused_saying_so(family_run):
    """It read "table lacks 62 feature column(s) the model needs: f00, ..." (an array's columns are
    x0, x1, ...), which named no way out."""
    model = trialfuse.load(family_run("lightgbm")[0])
    with pytest.raises(UserError, match="fit on named columns .*: give predict a DataFrame with them, not an array"):
        model.predict(np.zeros((3, 62)))


def test_a_rerun_refused_for_another_dataframe_keeps_the_runs_own_table(tmp_path):
    """The DataFrame was written into the run directory before the rerun's check: a refused
    rerun replaced data.parquet, and `explain` then read the old holdout rows out of the new table."""
    first = good_frame()
    trialfuse.fit(first, "y", out=tmp_path / "run", quiet=True, explain=False, **FAST)
    with pytest.raises(UserError, match="another table"):
        trialfuse.fit(first.assign(y=first["y"] * 2), "y", out=tmp_path / "run", quiet=True, explain=False, **FAST)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "data.parquet"), first)


def test_a_holdout_of_few_rows_gets_a_warning(tmp_path):
    """120 rows: the holdout's 24 rows give a score that one row moves far."""
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        model = trialfuse.fit(good_frame(), "y", out=tmp_path / "run", quiet=True, explain=False, **FAST)
        gc.collect()
    assert "the holdout has 24 rows: its score is a rough guide, not a measure" in model.record.warnings
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []  # workers' pipes closed


def test_an_mae_run_trains_both_objectives_and_predicts_ordinary_rows_past_a_few_far_targets(tmp_path):
    """5 targets entered as 1e6 among 600: a run by MAE was off by thousands on the ordinary rows
    (its models trained on squared error). Its boosting trials now train on squared, then absolute
    error (the leaderboard names which), and the saved model predicts the ordinary holdout rows."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"])
    frame["y"] = 10 * frame.a + rng.normal(size=600)
    frame.loc[rng.choice(600, 5, replace=False), "y"] = 1e6
    model = trialfuse.fit(frame, "y", metric="mae", models=["lightgbm"], trials=4, folds=3, timeout="60s",
                          out=tmp_path / "run", quiet=True)
    board = model.leaderboard()
    trials = board[board.family == "lightgbm"]
    assert list(trials.sort_values("trial").params.map(lambda p: p["objective"])) == \
        ["squared error", "absolute error"] * 2
    holdout = frame.iloc[json.loads((model.run_dir / "holdout_indices.json").read_text())["holdout_rows"]]
    ordinary = holdout[holdout.y < 1e5]
    error = np.abs(model.predict(ordinary) - ordinary.y.to_numpy())
    assert len(ordinary) > 100 and np.median(error) < 1.5 and np.mean(error) < 3.0, (np.median(error), np.mean(error))


def test_a_count_run_searches_poisson_beside_squared_error_and_explains_what_it_saved(tmp_path):
    """A count target (issue 34): the boosting trials train on squared error, then the Poisson
    deviance (the leaderboard names which), the saved model predicts counts that reproduce its
    holdout score, and its explanation has SHAP values unless a Poisson model is in it."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"])
    frame["visits"] = rng.poisson(np.exp(1 + 0.8 * frame.a))
    model = trialfuse.fit(frame, "visits", models=["lightgbm"], trials=4, folds=3, timeout="60s",
                          out=tmp_path / "run", quiet=True)
    assert model.record.task.counts
    board = model.leaderboard()
    trials = board[board.family == "lightgbm"]
    assert list(trials.sort_values("trial").params.map(lambda p: p["objective"])) == ["squared error", "poisson"] * 2
    holdout = frame.iloc[json.loads((model.run_dir / "holdout_indices.json").read_text())["holdout_rows"]]
    predicted = model.predict(holdout)
    assert poisson_saved(model) and predicted.min() > 0  # these counts follow a Poisson law: its models are kept
    assert r2_score(holdout.visits, predicted) == pytest.approx(model.record.holdout_score, abs=1e-9)
    found = json.loads((model.run_dir / "explain.json").read_text())
    assert found["shap_none"].startswith("a Poisson model's SHAP values add up to the log"), found["shap_none"]
    importance = model.explain(seconds=20)["importance"]  # the Python API says why, too
    assert "mean_abs_shap" not in importance and importance.attrs["shap_none"] == found["shap_none"]


def poisson_saved(model) -> bool:
    """Whether a Poisson model is (in) the saved model, as its metadata names it."""
    saved = json.loads((model.run_dir / "best_model" / "metadata.json").read_text())
    return any((m.get("params") or {}).get("objective") == "poisson" for m in saved.get("members") or [saved])
