"""What a family's study keeps of each trial, which trials count against its budget, and
the family's result as the comparison and results.json read it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from trialfuse.catalog import SCREEN, params_from_trial
from trialfuse.driver.fold_verdicts import InFlight, Outcome, running_means
from trialfuse.driver.storage import queue_retry
from trialfuse.seeds import seeded_as

log = logging.getLogger(__name__)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
UNCOUNTED = ("stopped_by_budget", "surplus", "orphaned")  # trials that do not use up the trial budget


@dataclass
class FamilyResult:
    """What the comparison and results.json need to know about one family's search."""

    family: str
    status: str = "ok"  # ok | skipped
    reason: str | None = None
    best_params: dict[str, Any] | None = None
    best_trial: int | None = None
    best_draw: int | None = None  # the best trial's place, which seeds its models (seeds.seeded_as)
    cv_score_mean: float | None = None
    cv_score_folds: list[float] = field(default_factory=list)
    best_rounds: list[int] = field(default_factory=list)
    best_fold_seconds: list[float] = field(default_factory=list)  # the best trial's training time per fold
    trials_complete: int = 0
    trials_failed: int = 0
    trials_pruned: int = 0
    seconds: float = 0.0  # the search's wall time, which every family shares
    train_seconds: float | None = None  # what its trials' folds took to train, over all workers (None: not recorded)
    stopped_by_budget: bool = False
    best_train_rows: int | None = None  # a fold's training rows at most, where the best trial had a sample
    best_whole_score: float | None = None  # a narrowed best trial's settings on every row and column, where they ran

    @property
    def cv_score_sd(self) -> float:
        """The spread of the best trial's fold scores (numpy's std, as the leaderboard's), one
        figure wherever it is shown; 0 with one fold, nan with none."""
        return float(np.std(self.cv_score_folds)) if self.cv_score_folds else float("nan")

    @property
    def best_seeded_as(self) -> int | None:
        """The place the best trial's models were seeded by (seeds.seeded_as)."""
        return self.best_trial if self.best_draw is None else self.best_draw

    @property
    def train_seconds_text(self) -> str:
        """`train_seconds` as tables show it: blank for a run recorded before it was kept."""
        return "" if self.train_seconds is None else f"{self.train_seconds:.1f}"

    def summary(self) -> dict[str, Any]:
        keys = ("status", "reason", "best_params", "best_trial", "cv_score_mean", "cv_score_folds", "best_rounds",
                "best_fold_seconds", "trials_complete", "trials_failed", "trials_pruned", "seconds",
                "train_seconds", "stopped_by_budget")
        return {k: getattr(self, k) for k in keys}


def train_seconds(answers: list[dict[str, Any]]) -> float:
    """The compute the folds' answers took: a fused NN batch's time shared among its models
    (`duration`), where `wall_seconds` would count the whole batch for each."""
    return float(sum(a.get("duration", wall_seconds(a)) for a in answers))


def trial_train_seconds(trial: optuna.trial.FrozenTrial) -> float:
    """What a trial's folds took to train (a trial recorded before `train_seconds` existed: its
    fold times)."""
    return float(trial.user_attrs.get("train_seconds", sum(trial.user_attrs.get("fold_seconds", []))))


def wall_seconds(answer: dict[str, Any]) -> float:
    """How long a fold took to come back: for a fused NN fold its whole batch's time, not the
    batch's time shared among its models (`duration`, the compute it used). Time estimates
    (what fits before the deadline, the retrain) need the first."""
    return float(answer.get("wall_seconds", answer.get("duration", 0.0)))


def tell(study: optuna.Study, entry: InFlight) -> None:
    """Record the trial's outcome once: fold scores as user attributes and intermediate values.
    A trial another driver already failed (this driver's heartbeat had stopped) keeps that end:
    its params were queued again, and the retry is what counts."""
    try:
        record(study, entry)
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was ended by another driver (heartbeat lost); its retry counts", entry.trial.number)


def record(study: optuna.Study, entry: InFlight) -> None:
    trial = entry.trial
    answers = [entry.results[f] for f in range(entry.checked)]
    if answers:
        trial.set_user_attr("cv_score_folds", [a["score"] for a in answers])
        trial.set_user_attr("best_rounds", [a["best_rounds"] for a in answers])
        trial.set_user_attr("fold_seconds", [wall_seconds(a) for a in answers])
        trial.set_user_attr("train_seconds", train_seconds(answers))
        if "batch_mode" in answers[0]:
            trial.set_user_attr("batch_modes", sorted({a["batch_mode"] for a in answers}))
    if entry.outcome in (Outcome.COMPLETE, Outcome.PRUNED):
        for step, value in enumerate(running_means(entry)):
            trial.report(value, step)
    if entry.outcome == Outcome.COMPLETE:
        study.tell(trial, running_means(entry)[-1], skip_if_finished=True)
    elif entry.outcome == Outcome.PRUNED:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
    else:
        trial.set_user_attr("fail_reason", entry.reason)
        if entry.outcome == Outcome.CUT:
            trial.set_user_attr("stopped_by_budget", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def counting(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that use up the family's budget, running ones included: not an orphan whose
    params were asked again (its retry counts), nor one that failed before it had params (its
    driver died between ask and suggest: nothing was tried), nor one cut by the time budget or surplus."""
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    state = optuna.trial.TrialState
    return [t for t in trials if t.state in (*FINISHED, state.RUNNING) and t.number not in retried
            and not (t.state == state.FAIL and not t.params)
            and not any(key in t.user_attrs for key in UNCOUNTED)]


def narrowed(trial: optuna.trial.FrozenTrial) -> bool:
    """A last-chance trial's: trained on a sample of each fold's rows (`train_rows`) or on the
    columns most related to the target (catalog.SCREEN)."""
    return "train_rows" in trial.user_attrs or SCREEN in trial.user_attrs


def queue_sampled_again(study: optuna.Study) -> None:
    """A last-chance trial that completed on a sample of each fold's rows or columns (`narrowed`) is
    queued once more, for a rerun to train its settings on every row and column first; its retry, not
    it, then counts toward the trial budget (`counting`). The last chance is itself most often the
    retry of a trial the deadline cut; the retry on every row that fails again is not queued
    again (FamilySearch.finish), so a config that never fits is not replayed forever."""
    trials = study.get_trials(deepcopy=False)
    queued = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == optuna.trial.TrialState.COMPLETE and narrowed(trial) and trial.number not in queued:
            queue_retry(study, trial)


def taken(study: optuna.Study) -> int:
    return len(counting(study.get_trials(deepcopy=False)))


def surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """True if trials numbered before this one already fill the budget (drivers racing on one database)."""
    return sum(t.number < trial.number for t in counting(study.get_trials(deepcopy=False))) >= n_trials


def summarize(study: optuna.Study, result: FamilyResult) -> None:
    trials = study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState
    result.trials_complete = sum(t.state == state.COMPLETE for t in trials)
    result.trials_failed = sum(t.state == state.FAIL for t in counting(trials))
    result.trials_pruned = sum(t.state == state.PRUNED for t in trials)
    result.train_seconds = sum(trial_train_seconds(t) for t in trials)
    if result.trials_complete:
        best = study.best_trial
        result.best_trial = best.number
        result.best_draw = seeded_as(best.number, best.user_attrs)
        result.best_train_rows = best.user_attrs.get("train_rows")
        result.best_params = params_from_trial(result.family, best)
        result.cv_score_mean = float(best.value)
        result.cv_score_folds = list(best.user_attrs.get("cv_score_folds", []))
        result.best_rounds = list(best.user_attrs.get("best_rounds", []))
        result.best_fold_seconds = list(best.user_attrs.get("fold_seconds", []))
        result.best_whole_score = next((float(t.value) for t in trials if t.state == state.COMPLETE and not narrowed(t)
                                        and t.user_attrs.get("retry_of") == best.number), None)
