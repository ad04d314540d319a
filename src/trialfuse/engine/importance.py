"""What drives a saved model's predictions and where it errs, on rows it never trained on:
permutation importance for any model, exact SHAP values where every member's library has
them (trees), partial dependence of the top features, and predicted vs actual.

Permutation importance is sklearn's definition, computed here because the shuffled copies
of several features go to the model in one call (see `permutation_importance`).

It must cost a run only a few seconds, and its cost is predictions: permutation importance
predicts its rows once per feature and repeat (62 x 3 = 186 copies on the reference table),
partial dependence once per grid point, and TreeSHAP costs 10-100x a prediction per row.
So one prediction of the plotted rows is timed first and each part gets the rows that fit
its share of `seconds` (at least 100; a 6-model tree ensemble on 2 cores gets about 200
rows for permutation importance). The rows each part used are in the result. Rankings
from a few hundred rows are coarse in the tail but clear at the top, which is what the
report shows.

Inside a run the box is also a hard limit (`limit`: the seconds left before the run must end):
a part whose least rows do not fit what is left is dropped (partial dependence; SHAP, or it
keeps the rows its timing probe took), and
where not even permutation importance on its least rows fits, the explanation is not made
(`OutOfTime`; `trialfuse explain` makes it later, with no limit): a many-class ensemble of fold
models predicts slowly enough that the floors alone could hold a run well past its budget.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.inspection import partial_dependence

from trialfuse.engine.saved_model import SavedModel
from trialfuse.task import NUMBERS

SECONDS = 5.0  # the whole explanation's time box, by default
SHARES = {"permutation": 0.5, "shap": 0.3, "partial_dependence": 0.2}  # of the time box
SAMPLE_ROWS = 2000  # rows plotted (predicted vs actual), and the most any part uses
SHAP_ROWS = 500  # mean |SHAP| settles well before this
PDP_ROWS = 300
MIN_ROWS = 100
TINY_ROWS = 10  # timed beside MIN_ROWS: the two give a call's cost and a row's, before the plotted rows are predicted
PROBE_ROWS = 20  # rows whose SHAP values are timed before choosing how many to compute
MIN_SHAP_ROWS = 50  # SHAP is the cross-check beside permutation importance: fewer rows will do
FEATURES_PER_CALL = 8  # permuted copies of this many features are predicted in one call
PDP_GRID = 10
PDP_FEATURES = 3
REPEATS = 3
MARGIN = 0.9  # of the time left that a part's estimated cost may take under a limit
# Past this many columns the saved model is asked which it reads (screened ones, those split on) and
# only those are shuffled; on fewer every one is read in practice (the reference table's 62 all are)
# and asking costs time in the run's explanation (CatBoost: 0.07 s a model of 800 rounds).
ASK_READ_COLUMNS = 100
SHAP_PER_PREDICTION = 100  # TreeSHAP's cost per row, in predictions of a row, at most: the probe's cost before it runs


class OutOfTime(Exception):
    """Not even the least explanation (permutation importance on MIN_ROWS rows) fits the time left;
    `needs`: about how many seconds it would take, where that is known."""

    def __init__(self, message: str, needs: float | None = None):
        super().__init__(message)
        self.needs = needs


def permutation_importance(predict, X: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                           repeats: int = REPEATS, score=NUMBERS.score,
                           seconds: float = math.inf, read: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the mean and spread of the drop in `score` (higher is better: the run's
    search metric, R² by default) when its values are shuffled
    (what sklearn.inspection.permutation_importance computes), with the shuffled copies of
    several features predicted in one call: a model's fixed cost per call (a tree
    ensemble's is milliseconds per member) is paid 8 times instead of 186. OutOfTime as soon as
    the calls so far say the whole would not end within `seconds` (a wide table's copies cost
    more than their predictions: 8,000 columns ran 5 times the estimate). `read`: the only
    columns the model reads (SavedModel.columns_read); every other one's drop is 0, unshuffled."""
    started = time.perf_counter()
    base = score(y, predict(X))
    based = time.perf_counter()
    n, width = X.shape
    shuffled = np.arange(width) if read is None else np.asarray(read)
    drops = np.zeros((width, repeats))
    for start in range(0, len(shuffled), FEATURES_PER_CALL):
        needs = based - started + (time.perf_counter() - based) * len(shuffled) / max(start, 1)
        if start and needs > seconds:
            raise OutOfTime(f"permutation importance on {n} rows needs about {needs:.1f} s, {seconds:.1f} s for it",
                            needs)
        features = shuffled[start:start + FEATURES_PER_CALL]
        copies = np.repeat(X[None], len(features) * repeats, axis=0)  # [copies, rows, features]
        for i, j in enumerate(features):
            for r in range(repeats):
                copies[i * repeats + r, :, j] = X[rng.permutation(n), j]
        predicted = predict(copies.reshape(-1, width))
        predicted = predicted.reshape(len(features), repeats, n, *predicted.shape[1:])
        for i, j in enumerate(features):
            drops[j] = [base - score(y, predicted[i, r]) for r in range(repeats)]
    return drops.mean(axis=1), drops.std(axis=1)


def _seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


class _Predictor(RegressorMixin, BaseEstimator):
    """A SavedModel in scikit-learn's estimator shape, for its inspection tools: its prediction,
    or for two classes the second class's probability (one curve says it all)."""

    def __init__(self, model: SavedModel | None = None):
        self.model = model

    def fit(self, X, y=None) -> _Predictor:  # already trained
        return self

    def predict(self, X) -> np.ndarray:
        predicted = self.model.predict(np.asarray(X, dtype=np.float64))
        return predicted[:, 1] if predicted.ndim == 2 and predicted.shape[1] == 2 else predicted

    def __sklearn_is_fitted__(self) -> bool:
        return True


def explain(model: SavedModel, X: np.ndarray, y: np.ndarray, feature_names: list[str], seed: int = 0,
            seconds: float | None = SECONDS, limit: float | None = None) -> dict[str, Any]:
    """The explanation as JSON-ready data, features ordered by permutation importance; within
    about `seconds` (None: no time box, every part on its most rows) and, given a `limit`, never
    past it: parts that do not fit are left out (their rows 0), OutOfTime if none fits."""
    started = time.perf_counter()

    def left() -> float:
        return math.inf if limit is None else limit - (time.perf_counter() - started)

    rng = np.random.default_rng(seed)
    order_rows = rng.permutation(len(y))[:SAMPLE_ROWS]  # random order: a table stored sorted must not bias a prefix
    X, y = np.asarray(X, dtype=np.float64)[order_rows], np.asarray(y, dtype=np.float64)[order_rows]
    if left() <= 0:
        raise OutOfTime(f"its share of the budget was spent before it began ({-limit:.1f} s past it)")
    predictor = _Predictor(model)
    tiny = _seconds(lambda: model.predict(X[:TINY_ROWS]))
    small = _seconds(lambda: model.predict(X[:MIN_ROWS]))  # one call's fixed cost shows at few rows
    plot_seconds = max(small, tiny + max(0.0, small - tiny) * (len(y) - TINY_ROWS) / (MIN_ROWS - TINY_ROWS))
    if plot_seconds > left():
        raise OutOfTime(f"predicting the {len(y)} plotted rows needs about {plot_seconds:.1f} s, "
                        f"{max(0.0, left()):.1f} s left",
                        plot_seconds * 2 + (time.perf_counter() - started))  # and permutation importance after
    started_plot = time.perf_counter()
    predicted = model.predict(X)
    per_row = max(0.0, time.perf_counter() - started_plot - small) / max(1, len(y) - MIN_ROWS)
    per_call = max(0.0, small - per_row * MIN_ROWS)
    rows = {"plots": len(y)}

    def within(part: str, calls: int, per_row: float, per_call: float, most: int, least: int = MIN_ROWS) -> int:
        """The rows whose `calls` calls fit the part's share of the time box, and the time left
        (less a margin: the costs are estimates): 0 where not even `least` rows fit it."""
        wanted = min(most, len(y))
        if seconds is not None:
            room = SHARES[part] * seconds / calls - per_call
            wanted = int(min(wanted, max(least, room / max(per_row, 1e-12))))
        fit = (MARGIN * left() / calls - per_call) / max(per_row, 1e-12)
        return wanted if wanted <= fit else (int(fit) if fit >= min(least, wanted) else 0)

    read = model.columns_read() if len(feature_names) > ASK_READ_COLUMNS else None
    shuffled = len(feature_names) if read is None else len(read)
    calls = -(-shuffled // FEATURES_PER_CALL) + 1  # the shuffled copies' calls and the base one
    for repeats in (REPEATS, 1):  # one shuffle a feature where three do not fit: a ranking, its spread unknown
        copies = shuffled * repeats + 1  # predictions of each row (a 60 s run's 4-class ensemble of fold models
        rows["permutation"] = n = within("permutation", calls, per_row * copies / calls, per_call, SAMPLE_ROWS)
        if n:  # had 2.3 s for the 4.3 s three shuffles took, and the report no explanation)
            break
    if n == 0:
        needs = calls * per_call + per_row * MIN_ROWS * copies + (time.perf_counter() - started)
        raise OutOfTime(f"permutation importance on {MIN_ROWS} rows needs about "
                        f"{needs - (time.perf_counter() - started):.1f} s, {max(0.0, left()):.1f} s left", needs)
    task = model.task
    importance_mean, importance_std = permutation_importance(model.predict, X[:n], y[:n], rng, repeats,
                                                             score=task.score, seconds=left(), read=read)
    shap_mean = None
    if model.has_contributions and per_call + PROBE_ROWS * per_row * SHAP_PER_PREDICTION <= MARGIN * left():
        probe_started = time.perf_counter()
        probe = model.contributions(X[:PROBE_ROWS])
        shap_per_row = (time.perf_counter() - probe_started) / len(probe)
        # where not even MIN_SHAP_ROWS fit, the probe's own rows (computed already) are the part's
        rows["shap"] = max(len(probe), within("shap", 1, shap_per_row, 0.0, SHAP_ROWS, least=MIN_SHAP_ROWS))
        rest = X[len(probe):rows["shap"]]
        shap = np.vstack([probe, model.contributions(rest)]) if len(rest) else probe
        by_class = np.abs(shap).mean(axis=0)  # [features], or [classes, features] (one SHAP set per class)
        shap_mean = by_class if by_class.ndim == 1 else by_class.sum(axis=0)
    elif model.has_contributions:
        rows["shap"] = 0
    order = np.argsort(-importance_mean, kind="stable")
    if read is not None:  # a column no model reads (screened models): after every read one, whatever its drop
        order = np.concatenate([order[np.isin(order, read)], order[~np.isin(order, read)]])
    features = [{"name": feature_names[j], "permutation_drop": float(importance_mean[j]),
                 "permutation_std": float(importance_std[j]),
                 **({"mean_abs_shap": float(shap_mean[j])} if shap_mean is not None else {}),
                 **({"mean_abs_shap_by_class": by_class[:, j].tolist()}
                    if shap_mean is not None and by_class.ndim == 2 else {})} for j in order]
    rows["partial_dependence"] = within("partial_dependence", PDP_GRID * PDP_FEATURES, per_row, per_call, PDP_ROWS)
    pdp_rows = X[:rows["partial_dependence"]]
    curves = []
    for j in order[:PDP_FEATURES] if len(pdp_rows) else []:
        if np.isnan(pdp_rows[:, j]).all():
            continue
        found = partial_dependence(predictor, pdp_rows, [int(j)], kind="average", grid_resolution=PDP_GRID,
                                   method="brute")
        average = found["average"]  # [outputs, grid]: one output, or one per class
        curves.append({"feature": feature_names[j], "grid": found["grid_values"][0].tolist(),
                       "average": average[0].tolist(), **({"by_class": average.tolist()} if len(average) > 1 else {})})
    units = "log-odds" if task.is_classification else "target units"
    return {"rows_used": len(y), "rows": rows, "metric": task.metric.label, "score": task.metric.shown(
                task.score(y, predicted)), "repeats": repeats,
            "shap": f"TreeSHAP (exact, {units}), the members' weighted sum" if shap_mean is not None else None,
            "shap_none": None if shap_mean is not None else model.without_contributions or "no time was left for them",
            "classes": list(task.classes), "features": features, "partial_dependence": curves,
            "points": {"actual": y.tolist(), "predicted": predicted.tolist()}}
