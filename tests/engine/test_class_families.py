"""Each tree family trains classes (y: codes 0..K-1) and predicts their probabilities, saved and loaded alike."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss

from trialfuse.catalog import STARTS
from trialfuse.engine.families import family_module
from trialfuse.task import Kind, Task

FAMILIES = ["xgboost", "lightgbm", "catboost", "hgb", "extra_trees", "random_forest"]


def classes_table(k: int, rows: int = 600, seed: int = 0):
    """Classes decided by the first two features (with noise): learnable, not trivial."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 5))
    score = X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.7, size=rows)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, k + 1)[1:-1])).astype(np.float64)
    return X[:450], y[:450], X[450:], y[450:]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [2, 3])
def test_a_family_learns_classes_and_its_saved_model_predicts_the_same(family, k, tmp_path):
    task = Task(Kind.BINARY if k == 2 else Kind.MULTICLASS, tuple(range(k)), "log_loss")
    X_train, y_train, X_val, y_val = classes_table(k)
    module = family_module(family)
    params = {**STARTS[family][0]} if STARTS.get(family) else {}
    fitted = module.fit(params, X_train, y_train, X_val, y_val, threads=1, seed=0, task=task)
    probabilities = task.probabilities(module.predict(fitted.model, X_val))
    assert probabilities.shape == (len(y_val), k)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    prior = np.bincount(y_train.astype(int), minlength=k) / len(y_train)
    assert log_loss(y_val, probabilities) < 0.8 * log_loss(y_val, np.tile(prior, (len(y_val), 1)))
    saved = tmp_path / module.save(fitted.model, tmp_path)
    again = task.probabilities(module.predict(module.load(saved), X_val))
    np.testing.assert_allclose(again, probabilities, atol=1e-6)


def test_numbers_stay_numbers():
    X_train, y_train, X_val, _ = classes_table(3)
    module = family_module("lightgbm")
    fitted = module.fit(STARTS["lightgbm"][0], X_train, y_train, X_val, y_val=X_val[:, 0], threads=1, seed=0)
    assert module.predict(fitted.model, X_val).shape == (len(X_val),)
