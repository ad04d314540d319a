"""What drives a saved model's predictions and where it errs, on rows it never trained on:
permutation importance for any model, exact SHAP values where every member's library has
them (trees), partial dependence of the top features, and predicted vs actual.

Rows are sampled: permutation importance predicts the rows once per feature and repeat
(62 features x 5 repeats = 310 predictions), so its cost grows with the rows, while its
ranking is already stable at 2,000 (the spread over repeats is reported with each score).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.inspection import partial_dependence, permutation_importance
from sklearn.metrics import r2_score

from trialfuse.engine.saved_model import SavedModel

SAMPLE_ROWS = 2000  # rows for importance and the plots
PDP_ROWS = 500  # rows averaged at each grid point of a partial-dependence curve
PDP_GRID = 20
PDP_FEATURES = 3
REPEATS = 5


class _Predictor(RegressorMixin, BaseEstimator):
    """A SavedModel in scikit-learn's estimator shape, for its inspection tools."""

    def __init__(self, model: SavedModel | None = None):
        self.model = model

    def fit(self, X, y=None) -> _Predictor:  # already trained
        return self

    def predict(self, X) -> np.ndarray:
        return self.model.predict(np.asarray(X, dtype=np.float64))

    def __sklearn_is_fitted__(self) -> bool:
        return True


def explain(model: SavedModel, X: np.ndarray, y: np.ndarray, feature_names: list[str], seed: int = 0) -> dict[str, Any]:
    """The explanation as JSON-ready data; features ordered by permutation importance."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(y), SAMPLE_ROWS, replace=False)) if len(y) > SAMPLE_ROWS else np.arange(len(y))
    X, y = np.asarray(X, dtype=np.float64)[rows], np.asarray(y, dtype=np.float64)[rows]
    predictor = _Predictor(model)
    predicted = predictor.predict(X)
    permuted = permutation_importance(predictor, X, y, scoring="r2", n_repeats=REPEATS, random_state=seed)
    shap = model.contributions(X)
    shap_mean = np.abs(shap).mean(axis=0) if shap is not None else None
    order = np.argsort(-permuted.importances_mean, kind="stable")
    features = [{"name": feature_names[j], "permutation_r2_drop": float(permuted.importances_mean[j]),
                 "permutation_std": float(permuted.importances_std[j]),
                 **({"mean_abs_shap": float(shap_mean[j])} if shap_mean is not None else {})} for j in order]
    pdp_rows = X[:PDP_ROWS]
    curves = []
    for j in order[:PDP_FEATURES]:
        if np.isnan(pdp_rows[:, j]).all():
            continue
        found = partial_dependence(predictor, pdp_rows, [int(j)], kind="average", grid_resolution=PDP_GRID,
                                   method="brute")
        curves.append({"feature": feature_names[j], "grid": found["grid_values"][0].tolist(),
                       "average": found["average"][0].tolist()})
    return {"rows_used": len(y), "r2": float(r2_score(y, predicted)), "repeats": REPEATS,
            "shap": "TreeSHAP (exact), the members' weighted sum" if shap is not None else None,
            "features": features, "partial_dependence": curves,
            "points": {"actual": y.tolist(), "predicted": predicted.tolist()}}
