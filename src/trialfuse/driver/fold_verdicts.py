"""A trial between ask and tell, and what its folds so far say: go on, pruned, failed, done.

Folds are judged strictly in fold order, and a pruning verdict compares a trial only with
trials asked before it, so the outcome follows from the ask order alone, never from which
worker answered first (the study's results do not depend on timing)."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from trialfuse.catalog import SCREEN
from trialfuse.transport.contracts import FoldPool
from trialfuse.transport.fold_queue import TrialKey

PRUNE_PEERS = 4  # earlier trials that passed a fold before the pruner judges a trial at that fold
PRUNER = optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0, n_min_trials=PRUNE_PEERS)  # from fold 1


class Outcome(enum.StrEnum):
    """How a trial ended (a string, so it reads and serializes as its value)."""

    COMPLETE = "complete"  # every fold trained and passed the pruner
    PRUNED = "pruned"  # stopped at a fold below the median of the trials before it
    FAILED = "failed"  # a fold failed (an error, a timeout, non-finite predictions)
    CUT = "cut"  # the time budget ended before its folds did: the config is asked again first next time


@dataclass
class InFlight:
    """A trial between ask and tell: its folds' answers and, once decided, its outcome."""

    trial: optuna.Trial
    peers: list[list[float]] | None  # with pruning: the trials ended when it was asked, their running
    # mean score at each fold they went on past
    earlier: list[InFlight] = field(default_factory=list)  # with pruning: this family's trials then in flight
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    checked: int = 0  # folds 0..checked-1 are in and were judged, in order
    passed: int = 0  # folds 0..passed-1 were also let through by the pruner (<= checked)
    outcome: Outcome | None = None
    reason: str | None = None


def judge(entry: InFlight, folds: int) -> None:
    """Decide what the folds in so far say, strictly in fold order, so the outcome does not
    depend on which fold happened to finish first."""
    while entry.outcome is None:
        if entry.passed < entry.checked:  # a fold is in but the pruner has not judged the trial there
            verdict = prune_verdict(entry, entry.passed)
            if verdict is None:  # an earlier trial has yet to pass or lose that fold: judged when it has
                return
            if verdict:
                entry.outcome = Outcome.PRUNED
                return
            entry.passed += 1
            continue
        if entry.checked not in entry.results:
            return
        answer = entry.results[entry.checked]
        if answer.get("cut"):
            entry.outcome, entry.reason = Outcome.CUT, "stopped by the time budget"
        elif answer.get("status") != "complete":
            entry.outcome, entry.reason = Outcome.FAILED, answer.get("error", "unknown error")
        elif not math.isfinite(answer["score"]):
            entry.outcome, entry.reason = Outcome.FAILED, "the model predicts non-finite values (training diverged)"
        else:
            entry.checked += 1
            if entry.checked == folds:
                entry.outcome, entry.passed = Outcome.COMPLETE, folds
            elif entry.peers is None:
                entry.passed = entry.checked


def prune_verdict(entry: InFlight, fold: int) -> bool | None:
    """Whether the trial's running mean score after `fold` (its best so far) is below the median
    of every trial before it that went on past that fold (Optuna's median rule; the rule's own startup
    phase is PRUNE_PEERS such trials). None while one of those before it is still undecided
    there: so the trials a verdict compares with follow from the ask order alone, never from
    which answer came back first; waiting costs little, as their folds were queued first."""
    went_on = list(entry.peers)
    for peer in entry.earlier:
        if peer.passed <= fold and peer.outcome is None:
            return None
        went_on.append(running_means(peer)[: peer.passed])
    peers = optuna.create_study(direction="maximize")
    peers.add_trials([optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=means[-1],
                                                intermediate_values=dict(enumerate(means)))
                      for means in went_on if means])
    return PRUNER.prune(peers, as_reported(entry, fold))


def running_means(entry: InFlight) -> list[float]:
    scores = [entry.results[f]["score"] for f in range(entry.checked)]
    return [float(np.mean(scores[: i + 1])) for i in range(len(scores))]


def as_reported(entry: InFlight, fold: int) -> optuna.trial.FrozenTrial:
    """The trial as the pruner sees it after `fold`: the running mean fold score at each fold so far."""
    values = dict(enumerate(running_means(entry)[: fold + 1]))
    return optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, intermediate_values=values)


def went_on(study: optuna.Study) -> list[list[float]]:
    """Each ended trial's running means at the folds it went on past: all of a complete
    trial's, a pruned trial's before the fold that pruned it; not a trial on screened columns
    (column_screen), whose scores are not those of a trial on every column."""
    state = optuna.trial.TrialState
    ended = [t for t in study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED))
             if SCREEN not in t.user_attrs]
    means = [[t.intermediate_values[f] for f in sorted(t.intermediate_values)] for t in ended]
    return [m if t.state == state.COMPLETE else m[:-1] for t, m in zip(ended, means, strict=True)]


def drop_unstarted(flight: dict[int, InFlight], family: str, pool: FoldPool, outcome: Outcome,
                    reason: str) -> None:
    """Trials that lose folds no worker had started end with `outcome`, their running folds
    stopped; the rest finish, unless `outcome` is CUT (past the deadline every running fold stops)."""
    for number, entry in flight.items():
        if entry.outcome is None:
            lose_unstarted(pool, TrialKey(family, number), entry, outcome, reason, stop_running=outcome == Outcome.CUT)


def lose_unstarted(pool: FoldPool, key: TrialKey, entry: InFlight, outcome: Outcome, reason: str,
                    stop_running: bool = False) -> bool:
    """Whether the trial lost unstarted folds: then it ends with `outcome` and its running folds
    stop (with `stop_running` they stop whatever it loses)."""
    if lost := pool.cancel(key, stop_running=stop_running) > 0:
        entry.outcome, entry.reason = outcome, reason
        pool.cancel(key)  # decided now: what still runs of it is of no use
    return lost
