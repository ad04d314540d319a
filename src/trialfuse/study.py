"""One Optuna study per model family: trials scored by mean K-fold validation R².

Trials are asked a few at a time (TPE with constant liar) so every worker has folds to
train, and each is told exactly once: complete with its mean R² (per-fold scores and
round counts kept as user attributes), or failed with the reason.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from trialfuse.search_space import SUGGEST, params_from_trial
from trialfuse.worker_pool import TrialFailed, WorkerPool

NN_TRIALS_PER_ASK = 4  # NN trials trained together (their folds fused); trees: one per worker
MAX_FAILURES_BEFORE_SKIP = 3  # failures in a row, with no success yet, that end a family
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


@dataclass
class FamilyResult:
    """What the comparison and results.json need to know about one family's search."""

    family: str
    status: str = "ok"  # ok | skipped
    reason: str | None = None
    best_params: dict[str, Any] | None = None
    best_trial: int | None = None
    cv_r2_mean: float | None = None
    cv_r2_folds: list[float] = field(default_factory=list)
    best_rounds: list[int] = field(default_factory=list)
    trials_complete: int = 0
    trials_failed: int = 0
    trials_pruned: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False

    def summary(self) -> dict[str, Any]:
        keys = ("status", "reason", "best_params", "best_trial", "cv_r2_mean", "cv_r2_folds", "best_rounds",
                "trials_complete", "trials_failed", "trials_pruned", "seconds", "stopped_by_budget")
        return {k: getattr(self, k) for k in keys}


def job_seed(seed: int, trial_number: int) -> int:
    """A model seed that depends only on the run seed and the trial, not on scheduling."""
    return (seed * 1_000_003 + trial_number * 7919) % (2**31 - 1)


def run_family_study(family: str, storage: optuna.storages.BaseStorage, n_trials: int, folds: int, seed: int,
                     pool: WorkerPool, on_trial: Callable[[FamilyResult], None] | None = None,
                     fuse: str | int = "auto", deadline: float | None = None,
                     must_start: bool = False) -> FamilyResult:
    """Run (or continue) `family`'s study until it holds `n_trials` finished trials.

    Past `deadline` (time.monotonic()) no new trials start; work in flight finishes. With
    `must_start`, one batch runs even past it, so a run always has a model to save.
    """
    started = time.perf_counter()
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    study = optuna.create_study(study_name=family, storage=storage, direction="maximize",
                                sampler=sampler, load_if_exists=True)
    _requeue_orphans(study)
    result = FamilyResult(family)
    failures_in_a_row = 0
    first_batch = True
    while True:
        remaining = n_trials - _counted(study)
        if remaining <= 0:
            break
        if deadline is not None and time.monotonic() >= deadline and not (must_start and first_batch):
            result.stopped_by_budget = True
            break
        first_batch = False
        per_ask = max(NN_TRIALS_PER_ASK, pool.workers) if family == "nn" else pool.workers
        batch = [study.ask() for _ in range(min(remaining, per_ask))]
        params = [SUGGEST[family](trial) for trial in batch]
        jobs = [(family, p, list(range(folds)), job_seed(seed, t.number)) for t, p in zip(batch, params, strict=True)]
        for trial, outcome in zip(batch, pool.run_trials(jobs, fuse), strict=True):
            if isinstance(outcome, TrialFailed):
                trial.set_user_attr("fail_reason", str(outcome))
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                failures_in_a_row += 1
                result.reason = str(outcome)
                continue
            failures_in_a_row = 0
            scores = [r["r2"] for r in outcome]
            trial.set_user_attr("cv_r2_folds", scores)
            trial.set_user_attr("best_rounds", [r["best_rounds"] for r in outcome])
            trial.set_user_attr("fold_seconds", [r["duration"] for r in outcome])
            if "batch_mode" in outcome[0]:
                trial.set_user_attr("batch_modes", sorted({r["batch_mode"] for r in outcome}))
            study.tell(trial, float(np.mean(scores)))
        _summarize(study, result)
        if on_trial:
            on_trial(result)
        if failures_in_a_row >= MAX_FAILURES_BEFORE_SKIP and result.trials_complete == 0:
            result.status = "skipped"
            break
    _summarize(study, result)
    if result.trials_complete == 0:
        result.status = "skipped"
        result.reason = result.reason or ("the time budget ran out before this family started"
                                          if result.stopped_by_budget else "no trial completed")
    result.seconds = time.perf_counter() - started
    return result


def _counted(study: optuna.Study) -> int:
    """Finished trials that count toward the budget: an orphan whose params were asked
    again is counted once, through its retry."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return sum(t.state in FINISHED and t.number not in retried for t in trials)


def _requeue_orphans(study: optuna.Study) -> None:
    """Trials left RUNNING by a driver that was killed: mark them failed and ask their params again, once.

    This assumes one driver per study (the run directory's journal); drivers sharing a
    study through a database must not reclaim each other's running trials.
    """
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if "retry_of" not in trial.user_attrs and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


def _summarize(study: optuna.Study, result: FamilyResult) -> None:
    trials = study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState
    result.trials_complete = sum(t.state == state.COMPLETE for t in trials)
    result.trials_failed = sum(t.state == state.FAIL for t in trials)
    result.trials_pruned = sum(t.state == state.PRUNED for t in trials)
    if result.trials_complete:
        best = study.best_trial
        result.best_trial = best.number
        result.best_params = params_from_trial(result.family, best)
        result.cv_r2_mean = float(best.value)
        result.cv_r2_folds = list(best.user_attrs.get("cv_r2_folds", []))
        result.best_rounds = list(best.user_attrs.get("best_rounds", []))
