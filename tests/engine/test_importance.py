"""The winner's explanation finds what the reference table's recipe planted (survivors.py:
f00, f01 x f02, f03, f40, f56 carry most of the signal; f10-f39 carry none)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from trialfuse.engine.families import family_module
from trialfuse.engine.importance import SAMPLE_ROWS, SHAP_ROWS, OutOfTime, explain
from trialfuse.engine.saved_model import SavedModel
from trialfuse.survivors import make_survivors
from trialfuse.task import NUMBERS

PLANTED = {"f00", "f01", "f02", "f03", "f40", "f56"}
NOISE = {f"f{i:02d}" for i in range(10, 40)}


@pytest.fixture(scope="module")
def data():
    X, y, names = make_survivors(9000, seed=0)
    return X.astype(np.float64), y.astype(np.float64), names


def _saved(tmp_path, family: str, params: dict, data) -> SavedModel:
    X, y, _ = data
    module = family_module(family)
    fitted = module.fit(params, X[:5000], y[:5000], X[5000:6000], y[5000:6000], seed=0, threads=2)
    directory = tmp_path / family
    directory.mkdir()
    return SavedModel(directory, {"family": family, "model_file": module.save(fitted.model, directory)})


def test_planted_features_outrank_every_noise_feature(tmp_path, data):
    X, y, names = data
    model = _saved(tmp_path, "lightgbm", {"learning_rate": 0.05, "num_leaves": 15}, data)
    found = explain(model, X[6000:], y[6000:], names, seconds=None)  # every part on its most rows
    assert found["rows_used"] == SAMPLE_ROWS and found["rows"]["shap"] == SHAP_ROWS  # of 3,000 holdout rows
    ranked = [f["name"] for f in found["features"]]
    assert max(ranked.index(name) for name in PLANTED) < min(ranked.index(name) for name in NOISE)
    by_shap = sorted(found["features"], key=lambda f: -f["mean_abs_shap"])
    shap_ranked = [f["name"] for f in by_shap]
    assert max(shap_ranked.index(name) for name in PLANTED - {"f01", "f02"}) < min(shap_ranked.index(n) for n in NOISE)
    assert [c["feature"] for c in found["partial_dependence"]] == ranked[:3]
    assert len(found["points"]["actual"]) == len(found["points"]["predicted"]) == SAMPLE_ROWS


def test_an_ensembles_shap_values_are_its_members_weighted_sum(tmp_path, data):
    X, _, _ = data
    lightgbm = _saved(tmp_path, "lightgbm", {"learning_rate": 0.1, "num_leaves": 8}, data)
    xgboost = _saved(tmp_path, "xgboost", {"learning_rate": 0.1, "max_depth": 3}, data)
    both = SavedModel(tmp_path, {"members": [
        {"family": "lightgbm", "model_file": "lightgbm/model.txt", "weight": 0.25},
        {"family": "xgboost", "model_file": "xgboost/model.json", "weight": 0.75}]})
    rows = X[6000:6100]
    expected = 0.25 * lightgbm.contributions(rows) + 0.75 * xgboost.contributions(rows)
    np.testing.assert_allclose(both.contributions(rows), expected, rtol=1e-12)
    # SHAP values add up to the prediction, up to a constant (the expected value)
    offset = both.predict(rows) - both.contributions(rows).sum(axis=1)
    np.testing.assert_allclose(offset, offset[0], atol=1e-4)


def test_a_model_without_exact_shap_is_explained_by_permutation_alone(tmp_path, data):
    X, y, names = data
    model = _saved(tmp_path, "nn", {"hidden_layers": [64, 32], "learning_rate": 1e-2, "epochs": 60}, data)
    found = explain(model, X[6000:7000], y[6000:7000], names)
    assert found["shap"] is None and "mean_abs_shap" not in found["features"][0]
    assert found["shap_none"] == "not every member is a tree model"
    assert found["features"][0]["name"] in PLANTED


def test_a_class_stack_of_trees_says_why_it_has_no_shap_values(tmp_path, data):
    """The report said "not every member is a tree model" of a stack of LightGBM and XGBoost models:
    the reason is the stack's softmax, which does not add its members' SHAP values up."""
    from trialfuse.blend import IDENTITY, SOFTMAX

    model = _saved(tmp_path, "lightgbm", {"learning_rate": 0.05, "num_leaves": 15}, data)
    assert model.has_contributions and model.without_contributions is None
    model.stack = {"link": IDENTITY, "intercept": 0.0}  # a number stack: a weighted sum, SHAP values add up
    assert model.has_contributions
    model.stack = {"link": SOFTMAX, "coef": [[1.0]], "intercept": [0.0]}
    assert not model.has_contributions and "softmax" in model.without_contributions


def test_the_time_box_bounds_the_rows_each_part_uses(tmp_path, data):
    X, y, names = data
    model = _saved(tmp_path, "lightgbm", {"learning_rate": 0.05, "num_leaves": 15}, data)
    boxed = explain(model, X[6000:], y[6000:], names, seconds=0.01)  # far too little: every part at its floor
    assert boxed["rows"] == {"plots": SAMPLE_ROWS, "permutation": 100, "shap": 50, "partial_dependence": 100}
    assert {f["name"] for f in boxed["features"][:3]} <= PLANTED | {"f04", "f05", "f06", "f07", "f08", "f09"}


def test_permutation_importance_agrees_with_scikit_learns():
    from sklearn.inspection import permutation_importance as sklearn_permutation_importance
    from sklearn.linear_model import LinearRegression

    from trialfuse.engine.importance import permutation_importance

    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 10))
    y = 3 * X[:, 0] + X[:, 1] + 0.5 * rng.standard_normal(400)
    linear = LinearRegression().fit(X, y)
    ours, spread = permutation_importance(linear.predict, X, y, np.random.default_rng(1), repeats=20)
    theirs = sklearn_permutation_importance(linear, X, y, scoring="r2", n_repeats=20, random_state=1)
    np.testing.assert_allclose(ours, theirs.importances_mean, atol=0.05)  # other shuffles, same expectation
    assert ours[0] > 1.0 and 0.05 < ours[1] < 0.5 and np.all(np.abs(ours[2:]) < 0.02) and spread.shape == (10,)


class _SlowLinear:
    """A model whose predictions cost what an 11-class ensemble of 20 fold models' do, in
    sleeps: `per_call` a call and `per_row` a row (TreeSHAP fifty predictions a row)."""

    task = NUMBERS
    has_contributions = True
    without_contributions = None

    def __init__(self, weights: np.ndarray, per_call: float, per_row: float):
        self.weights, self.per_call, self.per_row = weights, per_call, per_row

    def predict(self, X: np.ndarray) -> np.ndarray:
        time.sleep(self.per_call + self.per_row * len(X))
        return np.asarray(X) @ self.weights

    def contributions(self, X: np.ndarray) -> np.ndarray:
        time.sleep(self.per_call + 50 * self.per_row * len(X))
        return np.asarray(X) * self.weights

    def columns_read(self) -> None:
        return None  # every column, as SavedModel's where a model is not screened


def test_a_limit_drops_the_parts_that_do_not_fit_and_is_never_passed():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 8))
    weights = np.array([3.0, 1.0, 0, 0, 0, 0, 0, 0])
    y = X @ weights + 0.1 * rng.standard_normal(3000)
    model = _SlowLinear(weights, per_call=0.05, per_row=2e-5)  # partial dependence at its floor: 30 calls, 1.6 s
    started = time.perf_counter()
    found = explain(model, X, y, [f"x{j}" for j in range(8)], limit=0.6)
    assert time.perf_counter() - started < 0.6 + 0.05
    assert found["rows"]["permutation"] >= 100 and found["features"][0]["name"] == "x0"
    assert found["rows"]["partial_dependence"] == 0 and found["partial_dependence"] == []
    assert found["rows"]["shap"] == 0 and found["shap"] is None and found["shap_none"] == "no time was left for them"
    unlimited = explain(_SlowLinear(weights, per_call=0.0, per_row=0.0), X, y, [f"x{j}" for j in range(8)], limit=60)
    assert unlimited["rows"]["partial_dependence"] == 300 and unlimited["rows"]["shap"] == SHAP_ROWS


def test_where_not_even_permutation_importance_fits_there_is_no_explanation():
    X = np.random.default_rng(0).standard_normal((3000, 8))
    model = _SlowLinear(np.ones(8), per_call=0.1, per_row=1e-4)  # 100 rows x 8 features, one shuffle: 0.29 s
    started = time.perf_counter()
    with pytest.raises(OutOfTime, match=r"permutation importance on 100 rows needs about 0\.[345] s"):
        explain(model, X, X.sum(axis=1), [f"x{j}" for j in range(8)], limit=0.55)
    assert time.perf_counter() - started < 0.55


def test_where_three_shuffles_do_not_fit_one_does():
    """At 60 s the winner's explanation was left out of every run measured; on bands (a 4-class
    ensemble of fold models) three shuffles a feature needed 4.3 s where 2.3 s were left."""
    X = np.random.default_rng(0).standard_normal((3000, 8))
    weights = np.array([3.0, 1.0, 0, 0, 0, 0, 0, 0])
    model = _SlowLinear(weights, per_call=0.05, per_row=2e-4)  # 100 rows x 8 features: 0.6 s, one shuffle 0.28 s
    found = explain(model, X, X @ weights, [f"x{j}" for j in range(8)], limit=1.0)  # plotting first: 0.57 s
    assert found["repeats"] == 1 and found["rows"]["permutation"] >= 100 and found["features"][0]["name"] == "x0"
    assert explain(_SlowLinear(weights, 0.0, 0.0), X, X @ weights, [f"x{j}" for j in range(8)],
                   limit=60)["repeats"] == 3


def test_permutation_importance_stops_once_its_calls_say_it_would_not_end_in_time():
    """Its estimate is one prediction's cost per row; a wide table's shuffled copies cost more
    than their predictions (8,000 columns: about an hour where 10 minutes were estimated), and
    `trialfuse explain` ran on, saying nothing."""
    from trialfuse.engine.importance import permutation_importance

    X = np.random.default_rng(0).standard_normal((100, 80))
    model = _SlowLinear(np.ones(80), per_call=0.05, per_row=0.0)  # the base call and 10 of 8 features: 0.55 s
    calls = []

    def predict(rows):
        calls.append(len(rows))
        return model.predict(rows)

    with pytest.raises(OutOfTime, match=r"permutation importance on 100 rows needs about \d+\.\d s, 0\.2 s for it"
                       ) as caught:
        permutation_importance(predict, X, X.sum(axis=1), np.random.default_rng(0), seconds=0.2)
    assert len(calls) == 2 and caught.value.needs >= 0.5  # the base call and one of 8 features said it: 0.55 s at least
    calls.clear()
    permutation_importance(predict, X, X.sum(axis=1), np.random.default_rng(0), seconds=30.0)  # fits
    assert len(calls) == 11
