"""Ensemble selection (Caruana et al., ICML 2004): a weighted average of the search's own
models, chosen greedily on their out-of-fold predictions, the rule behind AutoGluon's
WeightedEnsemble.

Each round adds (with replacement) the model that most lowers the out-of-fold loss of the
running average (squared error for numbers, absolute error under MAE, log-loss of the averaged
class probabilities for classes: `Task.greedy_losses`); a model's weight is how often it was added over the rounds kept.
The rounds kept are the first ones up to the best out-of-fold score, so the ensemble is
never worse than the best single model on the rows it was chosen on. Ties go to the model
listed first, so one input gives one ensemble. Only search rows enter: the holdout scores
the chosen model afterwards and never chooses.

That score is chosen on the rows it is measured on, so it flatters the ensemble (by 0.0001-
0.0009 in R² on our tables). `cross_validated` gives the honest one: the selection made on
each fold's training rows and scored on its held-out rows, the same inner K-fold that scores
a stack (driver.stack), so the two compete on the same footing. The best single model's own
score flatters it too, as the best of many on the rows that chose it (by 0.003-0.010 in
log-loss on chile's 60 s runs, 60-70 candidates), and `inner_scores` scores that choice the
same way, beside the average started from it, and each fold's choices (`Inner.picks`) are
what the stack reads on that fold, so its inner score, too, never saw the rows it predicts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialfuse.blend import combine
from trialfuse.task import NUMBERS, Task

ROUNDS = 25  # greedy additions; weights are multiples of 1/25 at the finest (AutoGluon's default size)
NOISE = 2.0  # standard errors by which the best single model must beat an ensemble to be saved instead


@dataclass(frozen=True)
class Selection:
    """Counts per candidate (same order as the input) and the out-of-fold score (the search metric) they reach."""

    counts: np.ndarray  # [candidates] int
    score: float  # out-of-fold score of the weighted average

    @property
    def weights(self) -> np.ndarray:
        return self.counts / self.counts.sum()

    @property
    def members(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.counts)]


def select(predictions: np.ndarray, y: np.ndarray, rounds: int = ROUNDS, first: int | None = None,
           task: Task = NUMBERS) -> Selection:
    """Greedy forward selection with replacement over `predictions` [candidates, rows] (or
    [candidates, rows, K] class probabilities); with `first`, that candidate is the first pick
    (the search's best model, so the ensemble starts from it and can only be kept if it
    improves on it)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    counts = _greedy(task.greedy_view(y, predictions), y, rounds, first, task)
    return Selection(counts, task.score(y, _average(predictions, counts)))


def cross_validated(predictions: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                    rounds: int = ROUNDS, task: Task = NUMBERS) -> float:
    """The selection's honest out-of-fold score: each fold's rows predicted by the ensemble
    selected on the other folds' rows (as `select` would), then scored together."""
    return task.score(np.asarray(y, dtype=np.float64), _inner(predictions, y, folds, rounds, task, False)[1])


@dataclass(frozen=True)
class Pick:
    """What one fold's training rows chose: every candidate's score there, the best of them
    (`first`), and the average's members selected there from it."""

    scores: list[float]
    first: int
    members: list[int]


@dataclass(frozen=True)
class Inner:
    """The honest out-of-fold scores of the best single model and of the average, and each
    fold's `Pick`."""

    single: float
    average: float
    picks: list[Pick]
    single_predictions: np.ndarray  # the inner out-of-fold predictions the two scores are of
    average_predictions: np.ndarray


def inner_scores(predictions: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                 rounds: int = ROUNDS, task: Task = NUMBERS) -> Inner:
    """The honest out-of-fold scores of taking the best single model (the procedure, not the
    model it took on all rows) and of the average started from it, as `select` given the
    search's winner starts: each fold's rows predicted by the candidate that scores best on the
    other folds' rows, and by the average selected there from it (not from the winner, which all
    the rows chose). One pass: each fold's best is found once for both."""
    y = np.asarray(y, dtype=np.float64)
    single, blended, picks = _inner(predictions, y, folds, rounds, task, True)
    return Inner(task.score(y, single), task.score(y, blended), picks, single, blended)


def fold_scores(predictions: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                task: Task = NUMBERS) -> list[float]:
    """The search metric on each fold's rows of out-of-fold `predictions`, as a family's trial is
    scored (its CV mean and spread), so an ensemble's figure reads beside theirs: pooled over every
    row, an RMSE is never below its folds' mean (a new user's RMSE run showed the saved ensemble at
    3.54 above families of 2.92 and 3.09 by their fold means, where its own fold mean was lower)."""
    y, predictions = np.asarray(y, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    return [task.score(y[val], predictions[val]) for _, val in folds]


def clearly_worse(predictions: np.ndarray, single: np.ndarray, y: np.ndarray, task: Task = NUMBERS) -> bool:
    """Whether an ensemble's out-of-fold `predictions` lose to the best single model's (`single`)
    by more than NOISE standard errors of the mean per-row difference of their losses (the
    task's: what the average is chosen by). Only then is the single
    model saved: an ensemble of the search's models rarely generalizes worse than its best one,
    while on a small table the inner comparison of the two is noisy (README, "The ensemble")."""
    mean, error = shortfall(predictions, single, y, task)
    return mean > NOISE * error


def shortfall(predictions: np.ndarray, single: np.ndarray, y: np.ndarray, task: Task = NUMBERS) -> tuple[float, float]:
    """By how much an ensemble's per-row loss (see clearly_worse) exceeds the single model's on
    average (below zero where it is lower), and that mean's standard error."""
    y = np.asarray(y, dtype=np.float64)
    losses = task.row_losses(y, task.greedy_view(y, np.stack([predictions, single]).astype(np.float64)))
    difference = losses[0] - losses[1]
    error = float(np.std(difference, ddof=1)) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return float(np.mean(difference)), error


def _inner(predictions, y, folds, rounds: int, task: Task,
           from_the_best: bool) -> tuple[np.ndarray, np.ndarray, list[Pick]]:
    """Each fold's rows predicted by the best single candidate on the other folds' rows (with
    `from_the_best`; else left empty) and by the average selected there, from that one."""
    predictions = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    view = task.greedy_view(y, predictions)
    single, blended, picks = np.empty_like(predictions[0]), np.empty_like(predictions[0]), []
    for train, val in folds:
        scores = [task.score(y[train], p[train]) for p in predictions] if from_the_best else []
        first = int(np.argmax(scores)) if from_the_best else None  # the first of equals
        if first is not None:
            single[val] = predictions[first][val]
        counts = _greedy(view[:, train], y[train], rounds, first, task)
        blended[val] = _average(predictions[:, val], counts)
        if first is not None:
            picks.append(Pick(scores, first, [int(i) for i in np.flatnonzero(counts)]))
    return single, blended, picks


def _greedy(view: np.ndarray, y: np.ndarray, rounds: int, first: int | None, task: Task) -> np.ndarray:
    """The kept rounds' counts per candidate, from the candidates' `Task.greedy_view` [C, rows]."""
    total = np.zeros_like(view[0])
    counts = np.zeros(len(view), dtype=np.int64)
    best_counts, best_error = counts.copy(), np.inf
    for size in range(1, rounds + 1):
        errors = task.greedy_losses(y, (total + view) / size)
        pick = first if size == 1 and first is not None else int(np.argmin(errors))  # the first of equals
        total += view[pick]
        counts[pick] += 1
        if errors[pick] < best_error:
            best_error, best_counts = float(errors[pick]), counts.copy()
    return best_counts


def _average(predictions: np.ndarray, counts: np.ndarray) -> np.ndarray:
    kept = counts > 0
    return combine(predictions[kept], counts[kept] / counts.sum())
