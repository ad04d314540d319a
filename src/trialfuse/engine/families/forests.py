"""What scikit-learn's two forests share (random_forest.py, extra_trees.py): many deep trees
averaged, cheap and unlike boosting in their errors, so they widen what the ensemble and the
stack can combine (AutoGluon fits both for that reason). Missing values go down the trees as
scikit-learn routes them (native since 1.4, extra trees since 1.6).

A forest has no early stopping: its "rounds" are its trees, grown in chunks (warm start) so
the run's deadline is checked between them. Served and saved as `hgb` is (sklearn_saved.py).
Their trees split on squared error under every number objective: scikit-learn's absolute-error
criterion recomputes a median per candidate split, so a forest grows far slower by it; under
MAE they still join the ensemble only as far as they lower its absolute error. (A count's
Poisson objective they leave to the boosting families too.)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trialfuse.engine.families import Fitted, check_deadline
from trialfuse.task import NUMBERS, Task

TREES = 150  # trees per forest: past ~100 a forest's score moves in the fourth decimal, its time linearly
CHUNK = 25  # trees grown between deadline checks


def fitter(regressor: type, classifier: type) -> Callable[..., Fitted]:
    """A forest family's `fit` (the interface of trialfuse.engine.families) over these two
    learners: CPU only, no early stopping (the caller scores the validation rows), codes of
    category columns read as numbers."""

    def fit(params: dict[str, Any], X_train, y_train, X_val=None, y_val=None, *, device: str = "cpu",
            threads: int | None = None, seed: int = 0, rounds: int | None = None, deadline: float | None = None,
            task: Task = NUMBERS, categorical: Sequence[int] = ()) -> Fitted:
        """Grow `rounds` trees (TREES when searching), CHUNK at a time."""
        check_deadline(deadline)
        learner = classifier if task.is_classification else regressor
        trees = int(rounds or TREES)
        model = learner(n_estimators=0, warm_start=True, n_jobs=threads or 1, random_state=seed, **params)
        weights = task.row_weights(y_train)
        while model.n_estimators < trees:
            model.set_params(n_estimators=min(trees, model.n_estimators + CHUNK))
            model.fit(X_train, y_train, sample_weight=weights)
            check_deadline(deadline)
        model.set_params(warm_start=False)
        return Fitted(model=model, best_rounds=trees, rounds_run=trees)

    return fit
