"""Ensemble selection (Caruana et al., ICML 2004): a weighted average of the search's own
models, chosen greedily on their out-of-fold predictions, the rule behind AutoGluon's
WeightedEnsemble.

Each round adds (with replacement) the model that most lowers the out-of-fold loss of the
running average (squared error for numbers, log-loss of the averaged class probabilities
for classes: `Task.greedy_losses`); a model's weight is how often it was added over the rounds kept.
The rounds kept are the first ones up to the best out-of-fold score, so the ensemble is
never worse than the best single model on the rows it was chosen on. Ties go to the model
listed first, so one input gives one ensemble. Only search rows enter: the holdout scores
the chosen model afterwards and never chooses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialfuse.blend import combine
from trialfuse.task import NUMBERS, Task

ROUNDS = 25  # greedy additions; weights are multiples of 1/25 at the finest (AutoGluon's default size)
MIN_GAIN = 1e-4  # out-of-fold score (the search metric) an ensemble must add over the best single model


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
    total = np.zeros_like(predictions[0])
    counts = np.zeros(len(predictions), dtype=np.int64)
    best_counts, best_error = counts.copy(), np.inf
    for size in range(1, rounds + 1):
        errors = task.greedy_losses(y, (total + predictions) / size)
        pick = first if size == 1 and first is not None else int(np.argmin(errors))  # the first of equals
        total += predictions[pick]
        counts[pick] += 1
        if errors[pick] < best_error:
            best_error, best_counts = float(errors[pick]), counts.copy()
    score = task.score(y, combine(predictions[best_counts > 0], best_counts[best_counts > 0] / best_counts.sum()))
    return Selection(best_counts, score)
