"""One Optuna study per model family: trials scored by their mean K-fold validation score
(the run's search metric, higher is better).

Several trials are in flight at once (TPE with constant liar) so every worker has folds
to train, and each is told exactly once: complete with its mean score (per-fold scores and
round counts kept as user attributes), pruned after a losing fold, or failed with the reason.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna

from trialfuse.catalog import FAMILIES, SCREEN, suggest
from trialfuse.driver import fold_verdicts, last_chance, trial_records
from trialfuse.driver.allocation import CostShares
from trialfuse.driver.budget import Budget, final_seconds, finish_estimate, say_seconds, wall_time
from trialfuse.driver.fold_verdicts import PRUNE_PEERS, InFlight, Outcome, judge, running_means, went_on
from trialfuse.driver.out_of_fold import OutOfFold
from trialfuse.driver.storage import (
    Heartbeat,
    ask,
    fail_stale_trials,
    first_askings,
    keeps_heartbeats,
    queue_retry,
    queued_retries,
    recover_orphans,
    wait_for_other_drivers,
)
from trialfuse.driver.trial_records import FamilyResult, narrowed, summarize, surplus, taken, tell, wall_seconds
from trialfuse.seeds import model_seed, seeded_as
from trialfuse.task import NUMBERS, Task
from trialfuse.transport.contracts import FoldPool
from trialfuse.transport.fold_queue import TrialKey

log = logging.getLogger(__name__)
MAX_FAILURES_BEFORE_SKIP = 3  # failures in a row, with no success yet, that end a family
HURRY_SHARE = 0.25  # the last part of a time budget's search, in which trials under way finish before others start
CHECK_SECONDS = 1.0  # with a deadline, how often running folds are weighed against it when no answer comes


def run_studies(families: list[str], storage: optuna.storages.BaseStorage, n_trials: int | None, folds: int,
                seed: int, pool: FoldPool, on_trial: Callable[[FamilyResult], None] | None = None,
                budget: Budget | None = None, must_start: bool = True, prune: bool = True,
                out_of_fold: OutOfFold | None = None, portfolio: bool = True,
                task: Task = NUMBERS, rows: int | None = None, columns: int | None = None) -> dict[str, FamilyResult]:
    """Run (or continue) every family's study at once over one pool, until each holds
    `n_trials` finished trials or the `budget`'s search time is spent.

    `n_trials` None (only with a budget): as many as the budget allows, the workers shared
    among the families by cost (allocation.CostShares); otherwise families take turns.

    Each family keeps its own study and a fixed number of trials in flight; a family's new
    trial is asked right after its oldest one is told, and its trials are told in the order
    they were asked. So what TPE and the pruner see when trial n is asked is the same
    whatever the number of workers, their speed or the other families, and one seed gives
    one result. A trial's folds are judged in fold order: a failed fold fails it, and with
    `prune` a clearly losing trial is pruned (its folds not yet started are dropped).

    The deadline holds inside jobs too: every job carries it, and a fold still training
    then stops within a round or 64 steps; its trial is cut (not counted, and its params are
    queued, so a rerun asks them again first). With `must_start`, a run with no model at its deadline
    runs one last-chance trial, on a sample of each fold past `rows` and the columns most related to the
    target past `columns` (last_chance.py, which a wide table's first trials take too). With `out_of_fold`,
    every complete trial's validation predictions go to it (the pool must have been asked for them).
    With `portfolio`, a study asks the catalog's known-good configurations for the `task` first.
    """
    if n_trials is None and budget is None:
        raise ValueError("a search with no trial count needs a time budget")
    settings = SearchSettings(n_trials, folds, seed, prune, portfolio, task,
                              screen_first=last_chance.first_screen(columns))
    shares = CostShares(families, folds) if n_trials is None else None
    searches = [FamilySearch(f, storage, settings, pool, on_trial, shares, out_of_fold) for f in families]
    _drive(searches, pool, budget)
    while again := [search for search in searches if search.recovered()]:  # a dead driver's trials, asked again
        _drive(again, pool, budget)
    results = {search.family: search.finish() for search in searches}
    if must_start and budget is not None and not any(r.trials_complete for r in results.values()):
        results.update(_one_model_at_least(searches, storage, settings, pool, on_trial, out_of_fold, budget, rows,
                                           columns))
    return results


def run_family_study(family: str, storage: optuna.storages.BaseStorage, n_trials: int | None, folds: int, seed: int,
                     pool: FoldPool, **options) -> FamilyResult:
    """One family's study alone (see run_studies)."""
    return run_studies([family], storage, n_trials, folds, seed, pool, **options)[family]


def _one_model_at_least(searches: list[FamilySearch], storage, settings: SearchSettings, pool: FoldPool, on_trial,
                        out_of_fold: OutOfFold | None, budget: Budget, rows: int | None,
                        columns: int | None) -> dict[str, FamilyResult]:
    """No trial finished by the deadline: one more, shaped to fit (last_chance.py), until `Budget.last_end`."""
    candidates = [s for s in searches if s.failures_in_a_row < MAX_FAILURES_BEFORE_SKIP] or searches
    chance = last_chance.shaped({s.family: s.fold_seconds for s in candidates}, settings.folds, rows, columns)
    search = next(s for s in candidates if s.family == chance.family)
    shape = replace(settings, n_trials=taken(search.study) + 1, portfolio=True, train_rows=chance.train_rows,
                    screen=chance.screen)
    rescue = FamilySearch(search.family, storage, shape, pool, on_trial, out_of_fold=out_of_fold)
    _drive([rescue], pool, budget, until=budget.last_end())
    result = rescue.finish()
    trial_records.queue_sampled_again(rescue.study)
    result.stopped_by_budget = True
    result.seconds += search.result.seconds
    return {search.family: result}


def _drive(searches: list[FamilySearch], pool: FoldPool, budget: Budget | None, until: float | None = None) -> None:
    """Start the searches and feed them answers until none has a trial in flight. With a budget,
    the search's end is set again after every round of answers (it moves with the leader's
    estimated retrain time; `until`: held there) and travels with every job the pool starts."""
    by_name = {search.family: search for search in searches}
    began = time.monotonic()
    deadline = _set_deadline(budget, searches, pool, None, until)
    for search in searches:
        search.start()
    while any(search.flight for search in searches):
        deadline = _set_deadline(budget, searches, pool, deadline, until)
        pool.hurry_at = None if deadline is None else wall_time(deadline - HURRY_SHARE * (deadline - began))
        pool.dispatch()
        wait = min(CHECK_SECONDS, max(0.05, deadline - time.monotonic())) if deadline is not None else None
        done = pool.next_done(timeout=wait)
        while done is not None:  # every answer already in, so a whole task is judged before asking more
            if done.job.family in by_name:
                by_name[done.job.family].receive(done)
            done = pool.next_done(timeout=0)
        for search in searches:
            search.advance()
    pool.deadline = pool.hurry_at = None


def _set_deadline(budget: Budget | None, searches: list[FamilySearch], pool: FoldPool,
                  previous: float | None, until: float | None = None) -> float | None:
    """The search's end (time.monotonic()) for the searches, and as wall time for the jobs;
    once passed, it stays. `until`: that end, fixed."""
    deadline = previous if until is None else until
    if until is None and budget is not None and (previous is None or time.monotonic() < previous):
        leaders = [s.result for s in searches if s.result.cv_score_mean is not None]
        leader = max(leaders, key=lambda r: r.cv_score_mean) if leaders else None
        from_folds = pool.keep_models is not None  # models served by their folds
        after = {r.family: final_seconds(r.best_fold_seconds, from_folds, FAMILIES[r.family].exported)
                 for r in leaders}
        members = list(after.values()) if any(s.out_of_fold for s in searches) else []
        deadline = budget.search_end(after[leader.family] if leader and leader.best_fold_seconds else None, members,
                                     pool.workers)
    for search in searches:
        search.deadline = deadline
    pool.deadline = None if deadline is None else wall_time(deadline)
    return deadline


@dataclass(frozen=True)
class SearchSettings:
    """What every family's search is asked for (see run_studies)."""

    n_trials: int | None  # finished trials wanted per family; None: as many as the time budget allows
    folds: int
    seed: int
    prune: bool = True
    portfolio: bool = True  # a study asks the catalog's known-good configurations first (those not yet asked)
    task: Task = NUMBERS  # whose known-good configurations
    train_rows: int | None = None  # a fold's training rows at most (the last-chance trial's sample)
    screen: int | None = None  # a fold's columns at most, those most related to the target (the last chance's)
    screen_first: int | None = None  # a wide table's: as many for a new study's first trial (last_chance.py)


class FamilySearch:
    """One family's study in progress: the trials in flight and what stops new asks."""

    def __init__(self, family: str, storage: optuna.storages.BaseStorage, settings: SearchSettings, pool: FoldPool,
                 on_trial: Callable[[FamilyResult], None] | None = None, shares: CostShares | None = None,
                 out_of_fold: OutOfFold | None = None):
        self.family, self.settings, self.pool = family, settings, pool
        self.n_trials, self.folds = settings.n_trials, settings.folds  # read on every answer
        self.on_trial, self.shares, self.out_of_fold = on_trial, shares, out_of_fold
        self.deadline: float | None = None  # time.monotonic() at which the search stops (set by _drive)
        self.study = optuna.create_study(study_name=family, storage=storage, direction="maximize",
                                         load_if_exists=True)  # its sampler: storage.ask's, one for each trial
        recover_orphans(self.study)
        self.result = FamilyResult(family)
        self.flight: dict[int, InFlight] = {}  # in ask order
        self.window = FAMILIES[family].in_flight  # trials in flight at most: the pool's say, once started
        self.failures_in_a_row = 0
        self.have_model = False
        self.stop_asking = False  # the family failed too often: no new trials
        self.too_slow: str | None = None  # why a whole trial no longer fits before the deadline, if it does not
        self.cut = False  # the deadline passed: unstarted folds were dropped
        self.started = time.perf_counter()
        self.heartbeat: Heartbeat | None = None
        self.starts: list[dict[str, Any]] = []  # known-good params to ask before TPE's own
        self.fold_seconds: list[float] = []  # training time of each finished fold: the time estimates
        self.cut_trials: list[optuna.Trial] = []  # cut by the deadline: asked again first next time
        self.screen_next: int | None = None  # a wide table's new study: its first trial's columns (_screened)
        self.screened_first: set[int] = set()  # the trial it went to: its folds' time no estimate of a full fold's

    def _key(self, number: int) -> TrialKey:
        return TrialKey(self.family, number)

    def start(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        portfolio = self.settings.task.starts(FAMILIES[self.family]) if self.settings.portfolio else ()
        self.starts = list(portfolio[first_askings(self.study):])  # known-good first, those a stopped run had not asked
        wide_start = not trials and portfolio and not FAMILIES[self.family].batched  # a new study's first trial
        self.screen_next = self.settings.screen_first if wide_start else None
        self.have_model = any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        self.window = self.pool.window(self.family, self.n_trials)
        for _ in range(self.window):
            self._ask_one()
        if self.heartbeat is None:
            self.heartbeat = Heartbeat(self.study, lambda: [entry.trial for entry in list(self.flight.values())])

    def recovered(self) -> bool:
        """On a shared database, once the other drivers' trials are told or found orphaned:
        whether there is work left that a dead driver took (the trial budget is not used up,
        or, with a time budget, orphans were queued again), which this driver then runs."""
        if not keeps_heartbeats(self.study) or self.stop_asking or self._out_of_time():
            return False
        wait_for_other_drivers(self.study)
        if self.n_trials is not None:
            return taken(self.study) < self.n_trials
        return bool(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))

    def receive(self, done) -> None:
        """A fold's answer: judge its trial (in fold order) and drop the rest of a lost trial."""
        family, number = done.job.trial
        if family != self.family or number not in self.flight:  # trial numbers restart in every family's study
            return
        entry = self.flight[number]
        entry.results[done.job.fold] = done.result
        complete = done.result.get("status") == "complete"
        if complete and number not in self.screened_first:
            self.fold_seconds.append(wall_seconds(done.result))
        if self.shares is not None:
            self.shares.fold_done(self.family, float(done.result.get("duration", 0.0)), complete)
        self._judge_all()

    def _judge_all(self) -> None:
        """Judge every undecided trial, in ask order: a verdict on one (an answer, or a cut) may
        be what a later one's pruning verdict waits for; a lost trial's unstarted folds are dropped."""
        for entry in self.flight.values():
            if entry.outcome is None:
                judge(entry, self.folds)
                if entry.outcome in (Outcome.FAILED, Outcome.PRUNED, Outcome.CUT):
                    self.pool.cancel(self._key(entry.trial.number))

    def advance(self) -> None:
        """Past the deadline drop unstarted folds; tell what is decided; ask what replaces it."""
        if not self.cut and self._out_of_time():
            self.cut = self.result.stopped_by_budget = True
            fold_verdicts.drop_unstarted(self.flight, self.family, self.pool, Outcome.CUT, "stopped by the time budget")
        elif not self.cut:
            self._drop_what_cannot_finish()
        self._judge_all()  # a trial cut just now may be the one a later trial's verdict waited for
        self._tell_finished()
        while len(self.flight) < self.window and self._ask_one():  # e.g. a trial fits again: the end moved later
            pass

    def _drop_what_cannot_finish(self) -> None:
        """With a deadline, trials whose remaining folds would end after it are cut now, so
        their workers go to what can still finish; the family asks no more once a whole
        trial no longer fits (estimated from its folds so far, the workers sharing them; before
        any is done, from the longest-running fold's time so far: a floor on a fold's)."""
        if self.deadline is None:
            return
        undecided = {n: self.pool.progress(self._key(n)) for n, entry in self.flight.items() if entry.outcome is None}
        per_fold = float(np.median(self.fold_seconds)) if self.fold_seconds else \
            max((ran for _, running in undecided.values() for ran in running), default=0.0)
        if per_fold <= 0.0:
            return
        left = self.deadline - time.monotonic()
        workers = self.pool.workers
        for number, (queued, running) in undecided.items():  # one whose folds all run may still finish
            if finish_estimate(queued, running, per_fold, workers) > left and fold_verdicts.lose_unstarted(
                    self.pool, self._key(number), self.flight[number], Outcome.CUT, "stopped by the time budget"):
                self.result.stopped_by_budget = True
        trial_seconds = per_fold * math.ceil(self.folds / workers)
        about = "about" if self.fold_seconds else "at least"  # before any fold is done, a floor
        self.too_slow = (f"cannot finish a trial in the {say_seconds(left)} left ({about} {say_seconds(trial_seconds)} "
                         "each)" if trial_seconds > left else None)

    def finish(self) -> FamilyResult:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        queued = queued_retries(self.study)  # a wide table's screened first trial's is, from the start
        for trial in self.cut_trials:  # the time ran out, not the config: a rerun asks it once only (one that never
            # fits is not replayed forever); a cut last-chance trial (`narrowed`) once more, on every row and column
            if trial.number not in queued and ("retry_of" not in trial.user_attrs or narrowed(trial)):
                queue_retry(self.study, trial)
        self.cut_trials.clear()
        wait_for_other_drivers(self.study)
        summarize(self.study, self.result)
        if self.result.trials_complete == 0:
            self.result.status = "skipped"
            not_run = ("the time budget ran out before this family started" if self.result.stopped_by_budget
                       else "no trial completed")
            self.result.reason = self.too_slow or self.result.reason or not_run
        self.result.seconds = time.perf_counter() - self.started
        return self.result

    def _screened(self, trial: optuna.Trial) -> int | None:
        """A wide table's new study: its first trial's columns (a model in seconds where every column takes
        minutes a fold), its settings queued on every column as its retry (storage.queue_retry); else None."""
        if self.screen_next is not None:
            queue_retry(self.study, trial)
            self.screened_first.add(trial.number)
        screen, self.screen_next = self.screen_next, None
        return screen

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _ask_one(self) -> bool:
        """Ask a trial and queue its folds, unless the window is full or the budget is spent;
        False if none was asked."""
        if self.stop_asking or self.too_slow or len(self.flight) >= self.window:
            return False
        if keeps_heartbeats(self.study):  # another driver may have died since: its trials are asked again
            fail_stale_trials(self.study)
        if self.n_trials is not None and taken(self.study) >= self.n_trials:
            return False
        if self._out_of_time():
            self.result.stopped_by_budget = True
            return False
        if self.starts and not queued_retries(self.study):  # retries first: a start queued beside one stayed queued
            self.study.enqueue_trial(self.starts.pop(0), skip_if_exists=True)  # (another driver's may be there)
        trial = ask(self.study, self.settings.seed, self.out_of_fold.directory.parent if self.out_of_fold else None)
        if self.n_trials is not None and surplus(self.study, trial, self.n_trials):  # another driver took the last slot
            trial.set_user_attr("surplus", True)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return False
        params = suggest(self.family, trial, self.settings.task.objectives)
        entry = InFlight(trial, went_on(self.study) if self.settings.prune else None, list(self.flight.values()))
        if entry.peers is None or sum(bool(m) for m in entry.peers) + len(entry.earlier) < PRUNE_PEERS:
            entry.peers, entry.earlier = None, []  # too few trials before it to ever judge it: no pruning
        self.flight[trial.number] = entry
        turn, step = self.shares.next_turn(self.family) if self.shares is not None else (None, 1.0)
        screen = self.settings.screen or self._screened(trial)
        for key, most in (("train_rows", self.settings.train_rows), (SCREEN, screen)):
            if most is not None:  # a last-chance trial's narrowing, or a wide table's first trial (last_chance.py)
                trial.set_user_attr(key, most)
        params = params if screen is None else {**params, SCREEN: screen}
        self.pool.submit(self._key(trial.number), params, list(range(self.folds)),
                         model_seed(self.settings.seed, seeded_as(trial.number, trial.user_attrs)),
                         diagonal=entry.peers is not None, turn=turn, step=step, train_rows=self.settings.train_rows)
        return True

    def _tell_finished(self) -> None:
        """Tell the oldest trials that are decided, in ask order, asking a new one after each."""
        while self.flight and next(iter(self.flight.values())).outcome:
            entry = self.flight.pop(next(iter(self.flight)))
            entry.earlier = []  # its verdicts are final: the trials after it need only its own folds
            self._keep_predictions(entry)
            tell(self.study, entry)
            self._count(entry)
            self._skip_if_it_keeps_failing()
            summarize(self.study, self.result)
            if self.on_trial:
                self.on_trial(self.result)
            self._ask_one()

    def _keep_predictions(self, entry: InFlight) -> None:
        """A complete trial's out-of-fold predictions are kept before it is told: a driver killed
        between the two leaves a vector whose trial is not complete (ignored), never the reverse."""
        if self.out_of_fold is None:
            return
        if entry.outcome == Outcome.COMPLETE:
            self.out_of_fold.add(self.family, entry.trial.number, running_means(entry)[-1],
                                 [entry.results[f].get("val_predictions") for f in range(self.folds)])
        else:
            self.out_of_fold.discard(self.family, entry.trial.number)

    def _count(self, entry: InFlight) -> None:
        """What a told trial changes for the family: the cost shares, whether it has a model,
        a cut trial to ask again, the failures in a row, the reason shown."""
        complete = entry.outcome == Outcome.COMPLETE
        if self.shares is not None:
            self.shares.trial_done(self.family, running_means(entry)[-1] if complete else None)
        self.have_model = self.have_model or complete
        if entry.outcome == Outcome.CUT:
            self.result.stopped_by_budget = True
            self.cut_trials.append(entry.trial)
        self.failures_in_a_row = self.failures_in_a_row + 1 if entry.outcome == Outcome.FAILED else 0
        if not self.stop_asking:  # the reason a family is skipped is its own error, not "not run"
            self.result.reason = entry.reason or self.result.reason

    def _skip_if_it_keeps_failing(self) -> None:
        """A family with no model yet whose trials failed MAX_FAILURES_BEFORE_SKIP times in a
        row asks no more, and its trials not started end failed: its error, not the search's."""
        if self.failures_in_a_row >= MAX_FAILURES_BEFORE_SKIP and not self.have_model and not self.stop_asking:
            self.stop_asking = True
            fold_verdicts.drop_unstarted(self.flight, self.family, self.pool, Outcome.FAILED,
                            f"not run: {MAX_FAILURES_BEFORE_SKIP} trials failed in a row")

