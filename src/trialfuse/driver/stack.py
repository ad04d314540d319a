"""A second level (stacking, Wolpert 1992): a linear model fit on the search's kept out-of-fold
predictions, the rule behind AutoGluon's stack levels, kept linear so it is served from a few
numbers beside the members (blend.serve) and cannot memorise rows.

- numbers: least squares with non-negative weights and an intercept (scikit-learn's
  `LinearRegression(positive=True)`): Caruana's average without its sum-to-one and zero-offset
  constraints, so it can also correct the members' shared shrinkage toward the mean (least
  squares under MAE too: it competes by its out-of-fold MAE, and keeps out where that loses);
  for a count, served no lower than 0 (its intercept takes rows whose members are near 0 below
  it, and 0 is nearer every count than any value below);
- classes: a multinomial logistic regression on the members' log-probabilities (log-odds for
  two classes), which can weigh a member differently per class and recalibrate.

Its out-of-fold score comes from an inner K-fold over the same folds as the search (each row
predicted by a stack fit without it, on inputs chosen without it), so it competes with the
Caruana ensemble and the best single model on the same footing; only search rows enter, never
the holdout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from trialfuse.blend import IDENTITY, SOFTMAX, serve, stack_features
from trialfuse.task import Task

MAX_INPUTS = 8  # first-level models a stack reads at most (each is served: K fold models apiece)
MIN_SHARE = 0.01  # a number stack's input with less of the weight is dropped (its serving costs, it adds noise)
CLASS_C = 1.0  # the class stack's inverse L2 strength (scikit-learn's default)
BLAS_THREADS = 1  # its matrices are narrow (inputs x classes columns): threads cost more than they share


@dataclass(frozen=True)
class Stack:
    """A fitted stack: the inputs it kept (indices into the given predictions), its weights per
    kept input (numbers) and its served form (`blend.serve`'s `stack`), and its honest
    out-of-fold score in the search metric, and the predictions it is of."""

    inputs: list[int]
    weights: list[float]
    served: dict[str, Any]
    oof_score: float
    oof: np.ndarray


def fit(predictions: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], task: Task,
        read: list[int] | None = None, reads: list[list[int]] | None = None) -> Stack:
    """Fit the stack on the candidates `read` of `predictions` [candidates, rows(, K)] (out-of-fold,
    row order of `y`; None: all of them) and score it by an inner K-fold over `folds`, fold k's
    stack reading `reads[k]` (what that fold's training rows alone chose, `inputs`; None: `read`
    in every fold), so its score never saw the rows it predicts, as the average's does not.
    Numbers: inputs with under MIN_SHARE of the weight are dropped and the stack refit on the
    rest, except the first read (the best single model: what a failed member's retrain falls
    back to). The returned `inputs` index `predictions`.

    BLAS runs on BLAS_THREADS: it runs between the search and the retrain, inside the budget,
    and on 2 cores the class stack's six fits took 5.0 s with OpenBLAS's two threads and 1.5 s
    with one (carrier, 15,872 rows, 4 inputs of 11 classes; 7.8 s and 3.7 s on 100,000 rows)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    read = list(range(len(predictions))) if read is None else list(read)
    reads = [read] * len(folds) if reads is None else reads
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        oof = None
        for (train, val), fold_read in zip(folds, reads, strict=True):
            train, val = np.asarray(train), np.asarray(val)
            kept, weights, served = _fit(predictions[fold_read][:, train], y[train], task)
            predicted = serve(list(predictions[[fold_read[i] for i in kept]][:, val]), weights, served)
            oof = np.empty((len(y), *predicted.shape[1:])) if oof is None else oof
            oof[val] = predicted
        kept, weights, served = _fit(predictions[read], y, task)
    return Stack([read[i] for i in kept], weights, served, task.score(y, oof), oof)


def _fit(predictions: np.ndarray, y: np.ndarray, task: Task) -> tuple[list[int], list[float], dict[str, Any]]:
    """One stack fit on these rows: the inputs it keeps (indices into `predictions`), their
    weights and its served form (blend.serve's `stack`)."""
    if not task.is_classification:
        model = LinearRegression(positive=True).fit(predictions.T, y)
        share = model.coef_ / max(float(model.coef_.sum()), 1e-300)
        kept = [i for i in range(len(predictions)) if share[i] >= MIN_SHARE or i == 0]  # input 0: the fallback
        model.fit(predictions[kept].T, y)
        served = {"link": IDENTITY, "intercept": float(model.intercept_), **({"floor": 0.0} if task.counts else {})}
        return kept, [float(w) for w in model.coef_], served
    weights = task.row_weights(y)  # as the members trained: under "balanced" the stack must not undo it
    scale, logistic = class_stack().fit(stack_features(predictions), y.astype(np.int64),
                                        logisticregression__sample_weight=weights).named_steps.values()
    coef = logistic.coef_ / scale.scale_  # the standardization folded in: served on the raw features
    intercept = logistic.intercept_ - coef @ scale.mean_
    kept = list(range(len(predictions)))
    return kept, [1.0 / len(kept)] * len(kept), {"link": SOFTMAX, "coef": coef.tolist(),
                                                 "intercept": intercept.tolist()}


def class_stack() -> Pipeline:
    """The class stack's model: standardized log-probabilities (clipped at 1e-15 they span ~35
    units, and unscaled lbfgs took 1,422 iterations, 15 s, on 16,000 rows of 11 classes; scaled,
    66 and 0.6 s), then an L2 multinomial logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=CLASS_C, max_iter=1000))


def inputs(scores: list[float], families: list[str], chosen: list[int], first: int) -> list[int]:
    """Which candidates a stack reads: `first` (the best single model), every family's best,
    then the Caruana ensemble's members, best score first, MAX_INPUTS at most."""
    best_of_family = {}
    for i in np.argsort(scores)[::-1]:
        best_of_family.setdefault(families[i], int(i))
    order = [first, *best_of_family.values(), *sorted(chosen, key=lambda i: -scores[i])]
    return list(dict.fromkeys(order))[:MAX_INPUTS]
