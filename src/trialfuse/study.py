"""One Optuna study per model family: trials scored by mean K-fold validation R².

Several trials are in flight at once (TPE with constant liar) so every worker has folds
to train, and each is told exactly once: complete with its mean R² (per-fold scores and
round counts kept as user attributes), pruned after a losing fold, or failed with the reason.
"""
from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from trialfuse.search_space import SUGGEST, params_from_trial
from trialfuse.worker_pool import WorkerPool

IN_FLIGHT = {"nn": 8}  # trials asked ahead of the oldest unfinished one; other families: DEFAULT_IN_FLIGHT
DEFAULT_IN_FLIGHT = 4
MAX_FAILURES_BEFORE_SKIP = 3  # failures in a row, with no success yet, that end a family
PRUNE_AFTER_COMPLETE = 5  # the pruner compares a trial only once this many trials are complete
PRUNER = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_COMPLETE, n_warmup_steps=1)  # from the 2nd fold
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
DRIVER = f"{socket.gethostname()}:{os.getpid()}"  # which driver ran a trial, when several share a study
UNCOUNTED = ("stopped_by_budget", "surplus", "orphaned")  # trials that do not use up the trial budget


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


@dataclass
class InFlight:
    """A trial between ask and tell: its folds' answers and, once decided, its outcome."""

    trial: optuna.Trial
    snapshot: optuna.Study | None  # the trials complete when it was asked: what the pruner compares with
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    checked: int = 0  # folds 0..checked-1 are in and were judged, in order
    outcome: str | None = None  # complete | pruned | failed | cut
    reason: str | None = None


def run_family_study(family: str, storage: optuna.storages.BaseStorage, n_trials: int, folds: int, seed: int,
                     pool: WorkerPool, on_trial: Callable[[FamilyResult], None] | None = None,
                     deadline: float | None = None, must_start: bool = False, prune: bool = True) -> FamilyResult:
    """Run (or continue) `family`'s study until it holds `n_trials` finished trials.

    A fixed number of trials is in flight; each new trial is asked right after the oldest
    one is told, and trials are told in the order they were asked. So what TPE and the
    pruner see when trial n is asked is the same whatever the number of workers or their
    speed, and one seed gives one result. A trial's folds are judged in fold order: a
    failed fold fails it, and with `prune` a clearly losing trial is pruned (its folds not
    yet started are dropped). Past `deadline` (time.monotonic()) no trial starts and folds
    not yet started are dropped; with `must_start`, a family with no model yet runs one trial.
    """
    started = time.perf_counter()
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    study = optuna.create_study(study_name=family, storage=storage, direction="maximize",
                                sampler=sampler, load_if_exists=True)
    recover_orphans(study)
    result = FamilyResult(family)
    window = IN_FLIGHT.get(family, DEFAULT_IN_FLIGHT)
    flight: dict[int, InFlight] = {}
    have_model = any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    failures_in_a_row, stop_asking, cut = 0, False, False

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def ask_one() -> None:
        if stop_asking or len(flight) >= window:
            return
        if heartbeat_interval(study):  # another driver may have died since: its trials are asked again
            optuna.storages.fail_stale_trials(study)
        if taken(study) >= n_trials:
            return
        if out_of_time() and not (must_start and not have_model and not flight):
            result.stopped_by_budget = True
            return
        trial = study.ask()
        if _surplus(study, trial, n_trials):  # another driver took the last slot at the same moment
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        trial.set_user_attr("driver", DRIVER)
        params = SUGGEST[family](trial)
        flight[trial.number] = InFlight(trial, _pruning_snapshot(study) if prune else None)
        pool.submit((family, trial.number), family, params, list(range(folds)), job_seed(seed, trial.number))

    for _ in range(window):
        ask_one()
    beating = threading.Event()
    if heartbeat_interval(study):
        threading.Thread(target=_heartbeat, args=(study, flight, beating), daemon=True).start()
    while flight:
        pool.dispatch()
        wait = max(0.05, deadline - time.monotonic()) if deadline is not None and not cut else None
        done = pool.next_done(timeout=wait)
        while done is not None:  # every answer already in, so a whole task is judged before asking more
            if done.job.trial[0] == family and done.job.trial[1] in flight:
                entry = flight[done.job.trial[1]]
                entry.results[done.job.fold] = done.result
                _judge(entry, folds)
                if entry.outcome in ("failed", "pruned"):
                    pool.cancel((family, entry.trial.number))
            done = pool.next_done(timeout=0)
        if not cut and out_of_time() and (have_model or not must_start):
            cut = result.stopped_by_budget = True
            _drop_unstarted(flight, family, pool, "cut", "stopped by the time budget")
        while flight and next(iter(flight.values())).outcome:
            entry = flight.pop(next(iter(flight)))
            _tell(study, entry)
            have_model = have_model or entry.outcome == "complete"
            failures_in_a_row = failures_in_a_row + 1 if entry.outcome == "failed" else 0
            if not stop_asking:  # the reason a family is skipped is its own error, not "not run"
                result.reason = entry.reason or result.reason
            if failures_in_a_row >= MAX_FAILURES_BEFORE_SKIP and not have_model and not stop_asking:
                stop_asking = True
                _drop_unstarted(flight, family, pool, "failed", f"not run: {MAX_FAILURES_BEFORE_SKIP} trials "
                                "failed in a row")
            _summarize(study, result)
            if on_trial:
                on_trial(result)
            ask_one()
    beating.set()
    _wait_for_other_drivers(study)
    _summarize(study, result)
    if result.trials_complete == 0:
        result.status = "skipped"
        result.reason = result.reason or ("the time budget ran out before this family started"
                                          if result.stopped_by_budget else "no trial completed")
    result.seconds = time.perf_counter() - started
    return result


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats if the storage keeps them (a shared database), else None."""
    return getattr(study._storage, "get_heartbeat_interval", lambda: None)()


def _heartbeat(study: optuna.Study, flight: dict[int, InFlight], stop: threading.Event) -> None:
    """Tell a shared database that this driver's trials are alive (storages with a heartbeat only)."""
    interval = heartbeat_interval(study)
    while not stop.wait(interval):
        for entry in list(flight.values()):
            study._storage.record_heartbeat(entry.trial._trial_id)


def _wait_for_other_drivers(study: optuna.Study) -> None:
    """On a shared database, compare only once the other drivers' trials are told (or found
    orphaned by their stopped heartbeat), so every driver ranks the same finished study."""
    running = optuna.trial.TrialState.RUNNING
    while heartbeat_interval(study) and study.get_trials(deepcopy=False, states=(running,)):
        time.sleep(1.0)
        optuna.storages.fail_stale_trials(study)


def _judge(entry: InFlight, folds: int) -> None:
    """Decide what the folds in so far say, strictly in fold order, so the outcome does not
    depend on which fold happened to finish first."""
    while entry.outcome is None and entry.checked in entry.results:
        answer = entry.results[entry.checked]
        if answer.get("status") != "complete":
            entry.outcome, entry.reason = "failed", answer.get("error", "unknown error")
        elif not math.isfinite(answer["r2"]):
            entry.outcome, entry.reason = "failed", "the model predicts non-finite values (training diverged)"
        else:
            entry.checked += 1
            if entry.checked == folds:
                entry.outcome = "complete"
            elif entry.snapshot is not None and PRUNER.prune(entry.snapshot, _as_reported(entry)):
                entry.outcome = "pruned"


def _drop_unstarted(flight: dict[int, InFlight], family: str, pool: WorkerPool, outcome: str, reason: str) -> None:
    """Trials that lose folds no worker had started end with `outcome`; the rest finish."""
    for number, entry in flight.items():
        if entry.outcome is None and pool.cancel((family, number)):
            entry.outcome, entry.reason = outcome, reason


def _running_means(entry: InFlight) -> list[float]:
    scores = [entry.results[f]["r2"] for f in range(entry.checked)]
    return [float(np.mean(scores[: i + 1])) for i in range(len(scores))]


def _as_reported(entry: InFlight) -> optuna.trial.FrozenTrial:
    """The trial as the pruner sees it: the running mean fold R² at each fold so far."""
    values = dict(enumerate(_running_means(entry)))
    return optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values=values)


def _pruning_snapshot(study: optuna.Study) -> optuna.Study | None:
    """An in-memory copy of the trials complete now, or None while too few exist to prune."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < PRUNE_AFTER_COMPLETE:
        return None
    snapshot = optuna.create_study(direction="maximize")
    snapshot.add_trials(complete)
    return snapshot


def _tell(study: optuna.Study, entry: InFlight) -> None:
    """Record the trial's outcome once: fold scores as user attributes and intermediate values."""
    trial = entry.trial
    answers = [entry.results[f] for f in range(entry.checked)]
    if answers:
        trial.set_user_attr("cv_r2_folds", [a["r2"] for a in answers])
        trial.set_user_attr("best_rounds", [a["best_rounds"] for a in answers])
        trial.set_user_attr("fold_seconds", [a["duration"] for a in answers])
        if "batch_mode" in answers[0]:
            trial.set_user_attr("batch_modes", sorted({a["batch_mode"] for a in answers}))
    if entry.outcome in ("complete", "pruned"):
        for step, value in enumerate(_running_means(entry)):
            trial.report(value, step)
    if entry.outcome == "complete":
        study.tell(trial, _running_means(entry)[-1])
    elif entry.outcome == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        trial.set_user_attr("fail_reason", entry.reason)
        if entry.outcome == "cut":
            trial.set_user_attr("stopped_by_budget", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def counting(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that use up the family's budget, running ones included: not an orphan whose
    params were asked again (its retry counts), nor one cut by the time budget or surplus."""
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    state = optuna.trial.TrialState
    return [t for t in trials if t.state in (*FINISHED, state.RUNNING) and t.number not in retried
            and not any(key in t.user_attrs for key in UNCOUNTED)]


def taken(study: optuna.Study) -> int:
    return len(counting(study.get_trials(deepcopy=False)))


def _surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """True if trials numbered before this one already fill the budget (drivers racing on one database)."""
    return sum(t.number < trial.number for t in counting(study.get_trials(deepcopy=False))) >= n_trials


def retry_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial whose driver died: ask its params again, once (it no longer counts; its retry does)."""
    if "retry_of" in trial.user_attrs or not trial.params:
        return
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


def recover_orphans(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed driver are failed and asked again, once.

    With a database shared by several drivers, only trials whose heartbeat stopped are
    orphans (Optuna's heartbeat, with `retry_once` as its failed-trial callback); with the
    run directory's journal there is one driver, so every RUNNING trial is one.
    """
    if heartbeat_interval(study):
        optuna.storages.fail_stale_trials(study)
        return
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "orphaned", True)  # never counts, even without params
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        retry_once(study, trial)


def _summarize(study: optuna.Study, result: FamilyResult) -> None:
    trials = study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState
    result.trials_complete = sum(t.state == state.COMPLETE for t in trials)
    result.trials_failed = sum(t.state == state.FAIL for t in counting(trials))
    result.trials_pruned = sum(t.state == state.PRUNED for t in trials)
    if result.trials_complete:
        best = study.best_trial
        result.best_trial = best.number
        result.best_params = params_from_trial(result.family, best)
        result.cv_r2_mean = float(best.value)
        result.cv_r2_folds = list(best.user_attrs.get("cv_r2_folds", []))
        result.best_rounds = list(best.user_attrs.get("best_rounds", []))
