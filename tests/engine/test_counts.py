"""A count target (whole numbers from 0 or 1) has the boosting families search the Poisson deviance
beside squared error (issue 34: "the boosting families' Poisson or Tweedie objectives as searched
choices"). Each library trains on it where a trial's params say so, serves counts (not their log:
CatBoost's raw value is the log), and a saved model with a Poisson member says why it has no SHAP
values (TreeSHAP adds up to the log of its prediction)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trialfuse.catalog import FAMILIES, OBJECTIVE, STARTS
from trialfuse.driver.target import decide, is_count
from trialfuse.engine.families import family_module
from trialfuse.engine.saved_model import SavedModel
from trialfuse.task import Task

COUNTS = Task(counts=True)


def count_table(rows: int = 1600, seed: int = 0):
    """Counts whose mean is exp(0.8 x0): their spread grows with them, as a count's does."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    y = rng.poisson(np.exp(0.8 * X[:, 0])).astype(np.float64)
    cut = rows * 3 // 4
    return X[:cut], y[:cut], X[cut:], y[cut:]


@pytest.mark.parametrize(("values", "count"), [
    ([0, 1, 2, 5, 40], True), ([1, 1, 2, 7], True), ([0.0, 0.0, 3.0, 7.0], True), ([0] * 20 + [1, 2], True),
    ([0, 1], False),  # two values: a yes/no
    ([-1, 0, 3], False), ([0, 0.5, 2], False),  # a negative, a fraction
    ([1990, 2001, 2010], False), ([2, 3, 9], False),  # a year, whole units far from 0
    ([1, 2, 3, 4, 5] * 4, False), ([*range(1, 11)] * 2, False),  # ratings: no right tail
])
def test_a_count_is_whole_numbers_from_0_or_1_with_a_right_tail(values, count):
    assert is_count(np.array(values, dtype=np.float64)) is count


def test_a_count_target_searches_poisson_beside_squared_error_under_r2_and_rmse_only():
    task, _, line = decide(pd.Series([0, 1, 2, 3, 7, 12] * 5), "rbi")
    assert task.counts and task.objectives == ("squared error", "poisson")
    assert line.endswith("; a count: the boosting families search the Poisson deviance beside squared error")
    assert "count" not in (decide(pd.Series([0, 1, 2, 3, 7, 12] * 5), "rbi", metric="mae")[2] or "")
    assert decide(pd.Series([0, 1, 2, 3, 7, 12] * 5), "rbi", metric="rmse")[0].objectives == ("squared error",
                                                                                             "poisson")
    assert decide(pd.Series([0, 1, 2, 3, 7, 12] * 5), "rbi", metric="mae")[0].objectives == ("squared error",
                                                                                            "absolute error")
    assert decide(pd.Series([0.5, 1, 2, 3, 7, 12] * 5), "y")[0].objectives == ()
    assert Task.from_json(task.to_json()) == task and Task.from_json({"kind": "regression"}).counts is False
    starts = task.starts(FAMILIES["xgboost"])
    assert [s[OBJECTIVE] for s in starts] == ["squared error", "poisson", "squared error"]
    assert task.starts(FAMILIES["nn"]) == FAMILIES["nn"].start  # the NN and the forests train on squared error
    poisson = task.trained_by({OBJECTIVE: "poisson"})  # its folds read by the run's loss, and named so
    assert poisson.loss_name == "squared error" and poisson.loss(np.array([0.0, 4.0]), np.array([1.0, 2.0])) == 2.5


LOSSES = {"xgboost": ["reg:squarederror", "count:poisson"], "lightgbm": ["regression", "poisson"],
          "catboost": ["RMSE", "Poisson"], "hgb": ["squared_error", "poisson"]}  # each library's names


def trained_on(family: str, model) -> str:
    """The loss a fitted model records, in its library's words."""
    if family == "xgboost":
        return json.loads(model.save_config())["learner"]["objective"]["name"]
    if family == "lightgbm":
        return model.params["objective"]
    if family == "catboost":
        return model.get_all_params()["loss_function"]
    return model.loss


@pytest.mark.parametrize("family", ["xgboost", "lightgbm", "catboost", "hgb"])
def test_a_boosting_family_trains_on_poisson_where_its_params_chose_it_and_serves_counts(family, tmp_path):
    """The library says it trained on its Poisson loss; the early-stopped model predicts counts
    (positive, at the targets' mean: a log would sit far below it) and reloads to the same."""
    X_train, y_train, X_val, y_val = count_table()
    module = family_module(family)
    fitted = {name: module.fit({**STARTS[family][0], OBJECTIVE: name}, X_train, y_train, X_val, y_val, threads=1,
                               seed=0, task=COUNTS) for name in ("squared error", "poisson")}
    assert [trained_on(family, fitted[name].model) for name in ("squared error", "poisson")] == LOSSES[family]
    poisson = module.predict(fitted["poisson"].model, X_val)
    assert poisson.min() > 0 and abs(poisson.mean() - y_val.mean()) < 0.15 * y_val.mean(), poisson.mean()
    again = module.load(tmp_path / module.save(fitted["poisson"].model, tmp_path))
    np.testing.assert_allclose(module.predict(again, X_val), poisson, rtol=1e-6)


@pytest.mark.parametrize(("family", "scale"), [*((f, "mean 200") for f in ("xgboost", "catboost", "lightgbm", "hgb")),
                                               ("catboost", "one count of 60,000")])
def test_a_poisson_fit_starts_at_the_counts_mean_whatever_their_size(family, scale):
    """A new user's bike rentals (mean 443) failed every XGBoost Poisson trial ("Check failed:
    !std::isinf(base_score)": XGBoost started them at 1e32), and one count of 60,000 among small
    ones left CatBoost's Poisson model one tree deep (R² -2): each now starts at the mean."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1600, 3))
    y = rng.poisson(np.exp((5.3 if scale == "mean 200" else 1.5) + 0.5 * X[:, 0])).astype(np.float64)
    if scale != "mean 200":
        y[0] = 60_000.0  # a training row
    train, val = np.arange(1200), np.arange(1200, 1600)
    module = family_module(family)
    fitted = module.fit({**STARTS[family][0], OBJECTIVE: "poisson"}, X[train], y[train], X[val], y[val], threads=1,
                        seed=0, task=COUNTS)
    predicted = module.predict(fitted.model, X[val])
    r2 = 1 - np.mean((predicted - y[val]) ** 2) / np.var(y[val])
    assert r2 > 0.5 and fitted.best_rounds > 5, (r2, fitted.best_rounds)


@pytest.mark.parametrize("objective", ["squared error", "poisson"])
def test_a_saved_poisson_model_says_why_it_has_no_shap_values(objective, tmp_path):
    """TreeSHAP adds up to the log of a Poisson model's prediction: explaining it in the target's
    units would be wrong, so the explanation leaves SHAP out and says why."""
    X_train, y_train, X_val, y_val = count_table(400)
    module = family_module("lightgbm")
    params = {**STARTS["lightgbm"][0], OBJECTIVE: objective}
    fitted = module.fit(params, X_train, y_train, X_val, y_val, threads=1, seed=0, task=COUNTS)
    name = module.save(fitted.model, tmp_path)
    metadata = {"family": "lightgbm", "params": params, "model_file": name, "feature_names": ["a", "b", "c"],
                "task": COUNTS.to_json()}
    saved = SavedModel(tmp_path, metadata)
    np.testing.assert_allclose(saved.predict(X_val), module.predict(fitted.model, X_val))
    if objective == "poisson":
        assert saved.without_contributions == ("a Poisson model's SHAP values add up to the log of its prediction, "
                                               "not to the prediction")
    else:
        assert saved.has_contributions
