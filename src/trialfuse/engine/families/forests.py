"""What scikit-learn's two forests share (random_forest.py, extra_trees.py): many deep trees
averaged, cheap and unlike boosting in their errors, so they widen what the ensemble and the
stack can combine (AutoGluon fits both for that reason). Missing values go down the trees as
scikit-learn routes them (native since 1.4, extra trees since 1.6).

A forest has no early stopping: its "rounds" are its trees, grown in chunks (warm start) so
the run's deadline is checked between them. Served and saved as `hgb` is (sklearn_saved.py).
"""
from __future__ import annotations

from typing import Any

from trialfuse.engine.families import Fitted, check_deadline
from trialfuse.task import Task

TREES = 150  # trees per forest: past ~100 a forest's score moves in the fourth decimal, its time linearly
CHUNK = 25  # trees grown between deadline checks


def fit(learners: tuple[type, type], params: dict[str, Any], X_train, y_train, *, threads: int | None,
        seed: int, rounds: int | None, deadline: float | None, task: Task) -> Fitted:
    """Grow `rounds` trees (TREES when searching), CHUNK at a time; learners: (regressor, classifier)."""
    check_deadline(deadline)
    learner = learners[1] if task.is_classification else learners[0]
    trees = int(rounds or TREES)
    model = learner(n_estimators=0, warm_start=True, n_jobs=threads or 1, random_state=seed, **params)
    weights = task.row_weights(y_train)
    while model.n_estimators < trees:
        model.set_params(n_estimators=min(trees, model.n_estimators + CHUNK))
        model.fit(X_train, y_train, sample_weight=weights)
        check_deadline(deadline)
    model.set_params(warm_start=False)
    return Fitted(model=model, best_rounds=trees, rounds_run=trees)
