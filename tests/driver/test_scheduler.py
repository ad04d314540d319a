"""The scheduler against a fake transport: no processes, answers in any order, every rule checked.

`FakePool` speaks the pool's interface (submit / dispatch / next_done / cancel) and scores a
fold from its params alone, finishing queued folds in a shuffled order, as workers of uneven
speed would.
"""
from __future__ import annotations

import math
import random
import statistics
import time
from pathlib import Path

import optuna
import pytest

from trialfuse.catalog import FAMILIES, SCREEN
from trialfuse.driver import last_chance
from trialfuse.driver.budget import REPORT_SECONDS, Budget
from trialfuse.driver.last_chance import RESCUE_COLUMNS, RESCUE_TRAIN_ROWS
from trialfuse.driver.scheduler import run_family_study, run_studies
from trialfuse.driver.storage import held_for_rerun
from trialfuse.driver.trial_records import counting
from trialfuse.seeds import model_seed, seeded_as
from trialfuse.task import Kind, Task
from trialfuse.transport.fold_queue import FoldDone, FoldJob, TrialKey


def lightgbm_score(params: dict, fold: int) -> dict:
    """A smooth function of the params: best near learning_rate 0.05, a little noise per fold."""
    r2 = 0.5 - (math.log10(params["learning_rate"]) - math.log10(0.05)) ** 2 - 0.01 * fold
    return {"status": "complete", "score": r2, "best_rounds": 10 + fold, "duration": 0.01}


class FakePool:
    def __init__(self, score=lightgbm_score, order_seed: int = 0):
        self.score, self.rng = score, random.Random(order_seed)
        self.staged: list[FoldJob] = []
        self.pending: list[FoldJob] = []
        self.trained: list[tuple[int, int]] = []  # (trial, fold) in the order they were "trained"
        self.families: list[str] = []  # the family of each trained fold, in the same order
        self.cancelled = 0
        self.deadline = None  # set by the scheduler: the wall time every job it starts must stop by
        self.deadlines: list[float | None] = []  # the deadline each fold was "trained" under
        self.diagonal: dict[int, bool] = {}  # per trial number: may the pool spread its folds out
        self.windows_asked: list[tuple[str, int | None]] = []  # (family, its trial count) per window asked
        self.seeds: dict[int, int] = {}  # per trial number: the seed its models were given
        self.train_rows: dict[int, int | None] = {}  # per trial number: its folds' training rows at most
        self.jobs: list[FoldJob] = []  # every fold submitted

    def submit(self, trial, params, folds, seed, diagonal=True, turn=None, step=1.0, train_rows=None):
        self.staged += [FoldJob(trial, params, fold, seed, trial.number, 0, diagonal, turn, step, train_rows)
                        for fold in folds]
        self.jobs += self.staged[-len(folds):]
        self.diagonal[trial.number] = diagonal
        self.seeds[trial.number] = seed
        self.train_rows[trial.number] = train_rows

    def dispatch(self):
        self.pending += self.staged
        self.staged = []

    def window(self, family, trials=None):
        self.windows_asked.append((family, trials))
        return FAMILIES[family].in_flight

    def next_done(self, timeout=None):
        if not self.pending:
            return None
        job = self.pending.pop(self.rng.randrange(len(self.pending)))  # uneven workers: any order
        self.trained.append((job.trial.number, job.fold))
        self.deadlines.append(self.deadline)
        self.families.append(job.family)
        return FoldDone(job, self.score(job.params, job.fold))

    workers = 1  # the rest of contracts.FoldPool: one worker, no fold models kept, never in a hurry
    keep_models = None
    hurry_at = None

    def progress(self, trial):
        """Nothing is ever running: a fold is "trained" the moment it is read."""
        return sum(job.trial == trial for job in (*self.pending, *self.staged)), []

    def cancel(self, trial, stop_running=True):
        before = len(self.pending) + len(self.staged)
        self.pending = [j for j in self.pending if j.trial != trial]
        self.staged = [j for j in self.staged if j.trial != trial]
        self.cancelled += before - len(self.pending) - len(self.staged)
        return before - len(self.pending) - len(self.staged)


def search(pool, trials=12, folds=3, prune=True, seed=0, family="lightgbm", **extra):
    storage = optuna.storages.InMemoryStorage()
    result = run_family_study(family, storage, trials, folds, seed, pool, prune=prune, **extra)
    return result, optuna.load_study(study_name=family, storage=storage).get_trials(deepcopy=False)


def test_every_trial_is_told_once_with_its_fold_scores():
    result, trials = search(FakePool(), prune=False)
    assert result.status == "ok" and result.trials_complete == 12 and len(trials) == 12
    for trial in trials:
        folds = trial.user_attrs["cv_score_folds"]
        assert len(folds) == 3 and trial.value == pytest.approx(sum(folds) / 3)
        assert trial.user_attrs["best_rounds"] == [10, 11, 12] and "train_rows" not in trial.user_attrs
    assert result.cv_score_mean == max(t.value for t in trials)


def test_the_pool_sizes_a_familys_window_knowing_its_trial_count():
    pool = FakePool()
    search(pool, trials=12)
    assert pool.windows_asked == [("lightgbm", 12)]  # a GPU-sized NN window is capped by it (placement.window)


def test_the_search_does_not_depend_on_the_order_answers_arrive_in():
    runs = [search(FakePool(order_seed=order))[1] for order in (0, 1, 2)]
    signatures = [[(t.state, t.params, t.value) for t in trials] for trials in runs]
    assert signatures[0] == signatures[1] == signatures[2]
    assert [t.number for t in runs[0]] == list(range(len(runs[0])))


def test_clearly_losing_trials_are_pruned_and_their_later_folds_never_trained():
    pool = FakePool()
    result, trials = search(pool, trials=30, folds=4)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and result.trials_pruned == len(pruned)
    for trial in pruned:  # judged in fold order: its running mean fell below the median of the trials
        fold = max(trial.intermediate_values)  # before it that went on past that fold
        went_on = [t.intermediate_values[fold] for t in trials[: trial.number]
                   if t.state == optuna.trial.TrialState.COMPLETE or max(t.intermediate_values, default=-1) > fold]
        assert len(trial.user_attrs["cv_score_folds"]) == fold + 1 < 4 and len(went_on) >= 4
        assert max(trial.intermediate_values.values()) < statistics.median(went_on)
    assert any(max(t.intermediate_values) == 0 for t in pruned)  # from the first fold on
    assert len(pool.trained) < 30 * 4  # pruning saved folds
    assert pool.cancelled > 0


def test_only_trials_the_pruner_can_judge_have_their_folds_spread_out():
    pool = FakePool()
    search(pool, trials=20, folds=3)
    assert not any(pool.diagonal[n] for n in range(4))  # fewer than 4 trials before them
    assert all(pool.diagonal[n] for n in range(4, 20))
    pool = FakePool()
    search(pool, trials=20, folds=3, prune=False)
    assert not any(pool.diagonal.values())


def test_a_failing_family_is_skipped_with_its_own_error():
    def broken(params, fold):
        return {"status": "error", "error": "ValueError: bad fold"}

    pool = FakePool(score=broken)
    result, trials = search(pool)
    assert result.status == "skipped" and result.reason == "ValueError: bad fold"
    assert result.trials_complete == 0
    assert all(t.state == optuna.trial.TrialState.FAIL for t in trials)
    assert len(pool.trained) <= 4 * 3  # the window's trials at most, then no more asks


def test_a_diverged_fold_fails_only_its_trial():
    def sometimes_nan(params, fold):
        answer = lightgbm_score(params, fold)
        return {**answer, "score": float("nan")} if params["learning_rate"] > 0.2 else answer

    result, trials = search(FakePool(score=sometimes_nan), prune=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert all("non-finite" in t.user_attrs["fail_reason"] for t in failed)
    assert result.trials_complete + len(failed) == 12 and result.status == "ok"


def test_past_the_deadline_no_trial_starts_but_one_model_is_still_made():
    """On a sample of each fold's training rows (its validation rows whole), so that it fits: a
    million rows' trial of LightGBM took a 60 s run to 303 s."""
    past = Budget(end=time.monotonic(), seconds=10)  # the search's end (a fifth before it) is past
    pool = FakePool()
    result, trials = search(pool, budget=past, must_start=True)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 1 and result.stopped_by_budget
    assert pool.train_rows == {complete[0].number: RESCUE_TRAIN_ROWS}
    assert complete[0].user_attrs["train_rows"] == RESCUE_TRAIN_ROWS
    assert result.status == "ok"
    # a rerun with more time asks its settings on every row first; until then it does not use up --trials
    [again] = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    assert again.user_attrs == {"retry_of": complete[0].number, "draw": 0} and again.system_attrs["fixed_params"] == \
        complete[0].params
    assert complete[0] not in counting(trials)


def test_a_last_chance_trial_where_every_fold_is_smaller_than_the_sample_is_no_sample():
    """A 3,000-row table: the trial was recorded as trained on 10,000 rows a fold, its metadata
    said so beside 2,400 training rows, and a rerun trained the same trial again."""
    pool = FakePool()
    result, trials = search(pool, budget=Budget(end=time.monotonic(), seconds=10), must_start=True, rows=3000)
    [complete] = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pool.train_rows == {complete.number: None} and "train_rows" not in complete.user_attrs
    assert not [t for t in trials if t.state == optuna.trial.TrialState.WAITING] and result.status == "ok"
    _, trials = search(FakePool(), budget=Budget(end=time.monotonic(), seconds=10), must_start=True, rows=16_000)
    [complete] = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete.user_attrs["train_rows"] == RESCUE_TRAIN_ROWS  # 10,667 training rows a fold: sampled


def test_a_last_chance_trial_on_a_wide_table_trains_on_the_columns_most_related_to_the_target():
    """2,000 columns at 60 s: every family's fold took longer than the search (LightGBM's 32 s) and
    the run ended with no model. Its last chance now asks the screen in its params."""
    pool = FakePool()
    result, trials = search(pool, budget=Budget(end=time.monotonic(), seconds=10), must_start=True, rows=2000,
                            columns=2000)
    [complete] = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {job.params.get(SCREEN) for job in pool.jobs} == {RESCUE_COLUMNS}
    assert complete.user_attrs[SCREEN] == RESCUE_COLUMNS and "train_rows" not in complete.user_attrs
    assert result.best_params[SCREEN] == RESCUE_COLUMNS and result.status == "ok"
    narrow = FakePool()  # as many columns as the screen keeps: no screen
    _, trials = search(narrow, budget=Budget(end=time.monotonic(), seconds=10), must_start=True, rows=2000,
                       columns=RESCUE_COLUMNS)
    assert not any(SCREEN in job.params for job in narrow.jobs)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.WAITING]


def test_the_last_chance_after_cut_trials_is_asked_again_on_every_column_and_does_not_count():
    """As in a run: the search's trials are cut at the deadline, queued, and the last chance is the
    first of them asked again, screened; a rerun asks it once more on every column (the retry of a
    cut trial was never queued again: the screened config stayed, and used up --trials)."""
    def only_screened_fits(params, fold):
        return lightgbm_score(params, fold) if SCREEN in params else {
            "status": "error", "error": "DeadlineReached: stopped by the time budget", "cut": True}

    storage = optuna.storages.InMemoryStorage()
    pool = FakePool(score=only_screened_fits)
    result = run_family_study("lightgbm", storage, 4, 3, 0, pool, budget=Budget.starting_now(time.monotonic(), 1.0),
                              rows=2000, columns=2000, portfolio=False)  # no screened first trial: TPE's draws
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    [rescue] = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert "retry_of" in rescue.user_attrs and rescue.user_attrs[SCREEN] == RESCUE_COLUMNS
    assert result.status == "ok" and rescue not in counting(trials)
    [again] = [t for t in trials if t.user_attrs.get("retry_of") == rescue.number]
    assert again.state == optuna.trial.TrialState.WAITING and again.system_attrs["fixed_params"] == rescue.params
    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]  # it, and the cut trials' retries
    rerun = FakePool()  # with time for every column: every queued trial is asked, it on every column
    run_family_study("lightgbm", storage, len(waiting), 3, 0, rerun, rows=2000, columns=2000)
    asked = [job for job in rerun.jobs if job.trial.number == again.number]
    assert len(asked) == 3 and not any(SCREEN in job.params for job in asked)


def test_a_wide_tables_new_study_trains_its_first_trial_on_screened_columns_then_the_same_on_every_one():
    """2,000 x 2,000 at 120 s: only the NN finished a trial on every column, a useless one (holdout
    R² 0.39), and it won the run; a screened LightGBM at 30 s scored 0.84."""
    storage = optuna.storages.InMemoryStorage()
    pool = FakePool()
    run_studies(["lightgbm", "nn"], storage, 3, 3, 0, pool, prune=False, rows=2000, columns=2000)
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    first, second = trials[:2]
    assert first.user_attrs[SCREEN] == RESCUE_COLUMNS and SCREEN not in second.user_attrs
    assert first.params == second.params == FAMILIES["lightgbm"].start[0]
    assert second.user_attrs["retry_of"] == first.number  # its retry: asked once, and the one --trials counts
    assert first not in counting(trials) and len(counting(trials)) == 3
    assert trials[2].params == FAMILIES["lightgbm"].start[1]  # then the other starts
    assert {job.params.get(SCREEN) for job in pool.jobs if job.trial == TrialKey("lightgbm", 0)} == {RESCUE_COLUMNS}
    assert not any(SCREEN in job.params for job in pool.jobs if job.trial != TrialKey("lightgbm", 0))
    nn = optuna.load_study(study_name="nn", storage=storage).get_trials(deepcopy=False)
    assert not any(SCREEN in t.user_attrs for t in nn)  # the fused NN trains on every column
    before = len(trials)
    run_studies(["lightgbm"], storage, 5, 3, 0, FakePool(), prune=False, rows=2000, columns=2000)  # a rerun
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    assert len(counting(trials)) == 5 and not any(SCREEN in t.user_attrs for t in trials[before:])
    narrow = FakePool()
    search(narrow, trials=3, rows=2000, columns=RESCUE_COLUMNS)
    assert not any(SCREEN in job.params for job in narrow.jobs)


def test_a_screened_first_trial_cut_or_orphaned_is_not_queued_beside_its_retry():
    """Its settings on every column are queued as it is asked; cut (or left by a killed driver)
    it was queued once more, and a rerun trained the same settings twice on every column."""
    from trialfuse.driver.storage import recover_orphans

    def cut_all(params, fold):
        return {"status": "error", "error": "DeadlineReached: stopped by the time budget", "cut": True}

    storage = optuna.storages.InMemoryStorage()
    run_studies(["lightgbm"], storage, 4, 3, 0, FakePool(score=cut_all), prune=False, rows=2000, columns=2000,
                must_start=False, budget=Budget.starting_now(time.monotonic(), 1.0))
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    waiting = [t.user_attrs["retry_of"] for t in trials if t.state == optuna.trial.TrialState.WAITING]
    assert trials[0].user_attrs[SCREEN] == RESCUE_COLUMNS and len(waiting) == len(set(waiting))
    from trialfuse.driver.scheduler import FamilySearch, SearchSettings

    search = FamilySearch("lightgbm", optuna.storages.InMemoryStorage(), SearchSettings(4, 3, 0), FakePool())
    screened = search.study.ask({"learning_rate": optuna.distributions.FloatDistribution(0.01, 0.3, log=True)})
    screened.set_user_attr(SCREEN, RESCUE_COLUMNS)
    search.study.enqueue_trial(screened.params, user_attrs={"retry_of": screened.number})  # not asked yet
    search.cut_trials = [screened]
    search.finish()
    assert len(search.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))) == 1
    study = optuna.create_study(study_name="orphan", storage=storage)
    orphan = study.ask()
    orphan.suggest_float("learning_rate", 0.01, 0.3)
    study.enqueue_trial(orphan.params, user_attrs={"retry_of": orphan.number})
    recover_orphans(study)  # the driver died while the screened trial ran: its retry waits already
    assert len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))) == 1


def test_the_last_chance_is_the_quickest_family_and_on_a_wide_table_one_that_trains_a_fold_alone():
    quick_nn = {"nn": [1.0, 1.2], "lightgbm": [30.0], "catboost": []}
    assert last_chance.shaped(quick_nn, 8, 2000, 60) == last_chance.LastChance("nn", None, None)
    assert last_chance.shaped(quick_nn, 8, 2000, 2000) == last_chance.LastChance("lightgbm", None, RESCUE_COLUMNS)
    assert last_chance.shaped({"nn": [], "catboost": [], "xgboost": []}, 8, 2000, 60).family == "xgboost"  # cost
    assert last_chance.shaped({"nn": [1.0]}, 8, 2000, 2000) == last_chance.LastChance("nn", None, None)  # alone
    assert last_chance.shaped({"lightgbm": []}, 8, 100_000, 2000) == last_chance.LastChance(
        "lightgbm", RESCUE_TRAIN_ROWS, RESCUE_COLUMNS)
    assert last_chance.shaped({"lightgbm": []}, 8, 11_000, 100).train_rows is None  # 9,625 rows a fold


def test_past_the_deadline_a_family_with_nothing_to_show_is_skipped():
    result, trials = search(FakePool(), budget=Budget(end=0.0, seconds=10), must_start=False)
    assert trials == [] and result.status == "skipped" and result.stopped_by_budget
    assert "time budget" in result.reason


def test_every_family_searches_at_once_over_one_queue():
    pool = FakePool()
    storage = optuna.storages.InMemoryStorage()
    results = run_studies(["lightgbm", "xgboost"], storage, 6, 3, 0, pool, prune=False)
    assert [r.trials_complete for r in results.values()] == [6, 6]
    assert set(pool.families[:8]) == {"lightgbm", "xgboost"}  # interleaved from the start, not one after the other


def test_a_family_searches_the_same_alone_or_beside_others():
    alone = search(FakePool(order_seed=1))[1]
    storage = optuna.storages.InMemoryStorage()
    run_studies(["xgboost", "lightgbm"], storage, 12, 3, 0, FakePool(order_seed=2))
    beside = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    assert [(t.state, t.params, t.value) for t in alone] == [(t.state, t.params, t.value) for t in beside]


def test_a_fold_cut_at_its_deadline_cuts_its_trial_and_it_does_not_count():
    def cut_late_trials(params, fold):
        return {"status": "error", "error": "DeadlineReached: stopped by the time budget", "cut": True} \
            if params["learning_rate"] > 0.1 else lightgbm_score(params, fold)

    result, trials = search(FakePool(score=cut_late_trials), prune=False)
    cut = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert cut and all(t.user_attrs.get("stopped_by_budget") for t in cut)
    assert result.stopped_by_budget and result.trials_failed == 0  # cut trials are not failures
    assert result.trials_complete == 12  # the budget of 12 counts only trials that ran to the end


def test_a_new_study_starts_from_the_catalogs_portfolio_then_tpe():
    starts = FAMILIES["lightgbm"].start
    _, trials = search(FakePool(), trials=len(starts) + 2, prune=False)
    assert [t.params for t in trials[:len(starts)]] == list(starts)
    assert all(t.params not in starts for t in trials[len(starts):])  # then TPE's own draws


@pytest.mark.parametrize("family", ["lightgbm", "catboost"])
def test_a_class_study_starts_from_its_own_portfolio_where_the_catalog_has_one(family):
    starts = FAMILIES[family].class_start
    assert starts and starts != FAMILIES[family].start
    assert starts[0]["learning_rate"] < FAMILIES[family].start[0]["learning_rate"]  # not at the doubled rate
    classes = Task(Kind.MULTICLASS, ("a", "b", "c"), "log_loss")
    _, trials = search(FakePool(), trials=len(starts), prune=False, task=classes, family=family)
    assert [t.params for t in trials] == list(starts)
    assert classes.starts(FAMILIES["xgboost"]) == FAMILIES["xgboost"].start  # none of its own: the common one
    assert Task().starts(FAMILIES[family]) == FAMILIES[family].start  # numbers keep the common one


def test_without_the_portfolio_tpe_draws_from_the_first_trial():
    _, trials = search(FakePool(), trials=3, prune=False, portfolio=False)
    assert all(t.params not in FAMILIES["lightgbm"].start for t in trials)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_portfolio_entry_lies_inside_its_search_space(family):
    for start in FAMILIES[family].start + (FAMILIES[family].class_start or ()):
        study = optuna.create_study()
        study.enqueue_trial(start)
        trial = study.ask()
        FAMILIES[family].suggest(trial)
        assert trial.params == start  # Optuna keeps an enqueued value only if its distribution contains it


def test_an_answer_for_another_familys_trial_of_the_same_number_is_ignored():
    from trialfuse.driver.scheduler import FamilySearch, SearchSettings

    pool = FakePool()
    search = FamilySearch("lightgbm", optuna.storages.InMemoryStorage(), SearchSettings(4, 3, 0), pool)
    search.start()
    stray = FoldJob(TrialKey("xgboost", 0), {}, 0, 0)  # trial numbers restart in every family's study
    search.receive(FoldDone(stray, {"status": "error", "error": "not mine", "cut": True}))
    assert search.flight[0].results == {} and search.flight[0].outcome is None


def test_a_trial_cut_by_the_budget_is_asked_again_first_by_the_next_search():
    calls = {"n": 0}

    def first_trial_cut(params, fold):
        calls["n"] += 1
        return {"status": "error", "error": "DeadlineReached", "cut": True} if calls["n"] == 1 \
            else lightgbm_score(params, fold)

    storage = optuna.storages.InMemoryStorage()
    run_family_study("lightgbm", storage, 3, 3, 0, FakePool(score=first_trial_cut), prune=False)
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    cut = [t for t in trials if t.user_attrs.get("stopped_by_budget")]
    assert len(cut) == 1 and cut[0].params  # then queued: asked first by the rerun
    rerun = FakePool()
    result = run_family_study("lightgbm", storage, 4, 3, 0, rerun, prune=False)
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    retry = [t for t in trials if t.user_attrs.get("retry_of") == cut[0].number]
    assert len(retry) == 1 and retry[0].params == cut[0].params
    # seeded as the trial it repeats: a resumed run trains the models an uninterrupted one would (a new
    # number gave a new seed, and the same settings scored 0.2706 where they had scored 0.2815)
    assert rerun.seeds[retry[0].number] == model_seed(0, cut[0].number) != model_seed(0, retry[0].number)
    assert retry[0].state == optuna.trial.TrialState.COMPLETE and result.trials_complete == 4


class InterruptedPool(FakePool):
    """Ctrl-C after `answers` fold answers: the trials in flight are left running, as a killed driver leaves them."""

    def __init__(self, answers: int):
        super().__init__()
        self.answers = answers

    def next_done(self, timeout=None):
        if self.answers == 0:
            raise KeyboardInterrupt
        self.answers -= 1
        return super().next_done(timeout)


@pytest.mark.parametrize("answers", [2, 14, 40])  # stopped among the starts, TPE's random draws, or its model's
def test_a_run_interrupted_and_resumed_asks_and_seeds_what_an_uninterrupted_run_does(answers):
    """Found by a new user: after Ctrl-C the rerun queued the four trials it had lost, then its
    sampler, seeded afresh, drew the first setting the interrupted run had drawn (a fifth trial
    spent on a setting already trained), where the uninterrupted run tried a new one; and a run
    stopped among the portfolio's starts never asked the rest. Each trial is asked and seeded as
    the uninterrupted run's trial in its place (its draw)."""
    trials = len(FAMILIES["lightgbm"].start) + 20  # past the portfolio and TPE's ten random draws
    whole = FakePool()
    _, uninterrupted = search(whole, trials=trials, prune=False)
    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(KeyboardInterrupt):
        run_family_study("lightgbm", storage, trials, 3, 0, InterruptedPool(answers), prune=False)
    rerun = FakePool()
    run_family_study("lightgbm", storage, trials, 3, 0, rerun, prune=False)
    resumed = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    assert any("retry_of" in t.user_attrs for t in resumed)  # the interrupted trials were asked again
    complete = optuna.trial.TrialState.COMPLETE
    by_place = sorted((seeded_as(t.number, t.user_attrs), t) for t in resumed if t.state == complete)
    assert [place for place, _ in by_place] == list(range(trials))
    assert [t.params for _, t in by_place] == [t.params for t in uninterrupted]
    assert [rerun.seeds.get(t.number) for _, t in by_place[-8:]] == [whole.seeds[t.number] for t in uninterrupted[-8:]]


def test_trials_failed_by_the_job_timeout_are_asked_again_once_by_a_rerun():
    """Found by a new user: every trial failed on `--job-timeout 1s`; the rerun with `--job-timeout
    60s` trained nothing ("no trial completed"): the failed trials had used up `--trials`. A worker
    killed by the job timeout says nothing of the settings, so a rerun asks them again, once."""
    def timed_out(params, fold):
        return {"status": "error", "error": "timed out: no answer within 1 s"}

    storage = optuna.storages.InMemoryStorage()
    first = run_family_study("lightgbm", storage, 3, 3, 0, FakePool(score=timed_out), prune=False)
    assert first.status == "skipped" and first.trials_failed == 3
    assert held_for_rerun(storage, ["lightgbm"]).again == 3  # a rerun's start: said, and queued
    again = run_family_study("lightgbm", storage, 3, 3, 0, FakePool(), prune=False)
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    assert again.status == "ok" and again.trials_complete == 3 and again.trials_failed == 0
    assert [t.user_attrs["retry_of"] for t in retries] == [t.number for t in failed]
    assert [t.params for t in retries] == [t.params for t in failed]
    assert held_for_rerun(storage, ["lightgbm"]).again == 0  # once: nothing is asked again
    third = run_family_study("lightgbm", storage, 3, 3, 0, FakePool(), prune=False)
    assert third.trials_complete == 3 and len(optuna.load_study(study_name="lightgbm", storage=storage).trials) == 6


def test_the_search_ends_earlier_or_later_with_the_leaders_retrain_time():
    def slow_folds(params, fold):
        return {**lightgbm_score(params, fold), "duration": 20.0}

    pool = FakePool(score=slow_folds)
    now_wall, now = time.time(), time.monotonic()
    search(pool, trials=8, folds=3, prune=False, budget=Budget(end=now + 1000, seconds=1000))
    first, last = pool.deadlines[0], pool.deadlines[-1]
    assert first == pytest.approx(now_wall + 1000 - 200, abs=5)  # no trial yet: a fifth of the budget kept back
    assert last == pytest.approx(now_wall + 1000 - REPORT_SECONDS - 3 * 20.0 / 2, abs=5)  # the leader's retrain


def test_a_retry_that_is_cut_again_is_not_queued_a_third_time():
    from trialfuse.driver.scheduler import FamilySearch, SearchSettings

    search = FamilySearch("lightgbm", optuna.storages.InMemoryStorage(), SearchSettings(4, 3, 0), FakePool())
    study = search.study
    first = study.ask({"learning_rate": optuna.distributions.FloatDistribution(0.01, 0.3, log=True)})
    study.enqueue_trial(first.params, user_attrs={"retry_of": first.number})
    retry = study.ask()
    search.cut_trials = [first, retry]  # both cut by the deadline
    search.finish()
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["retry_of"] for t in waiting] == [first.number]  # the retry is not queued again


def test_a_trial_is_told_complete_only_once_its_out_of_fold_predictions_are_kept():
    class Killed(BaseException):
        """The driver dies while keeping the first complete trial's predictions."""

    class DyingStore:
        directory = Path("run") / "oof"  # as OutOfFold's: its run directory is recorded on each trial

        def add(self, *args):
            raise Killed

    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(Killed):
        run_family_study("lightgbm", storage, 3, 3, 0, FakePool(), prune=False, out_of_fold=DyingStore())
    trials = optuna.load_study(study_name="lightgbm", storage=storage).get_trials(deepcopy=False)
    assert trials and not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_a_verdict_waiting_for_a_trial_the_deadline_cuts_is_given_and_the_search_ends(monkeypatch):
    """Trial 4 never answers; the later trials' pruning verdicts wait for it at fold 0, their
    own folds all in. When the deadline cuts trial 4 they must be judged without it, or the
    search would wait forever for an answer that no longer comes."""
    import signal

    from trialfuse.driver import scheduler

    clock = {"now": 1000.0}
    monkeypatch.setattr(scheduler, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock["now"]),
                                                               "time": staticmethod(lambda: clock["now"]),
                                                               "perf_counter": staticmethod(lambda: clock["now"])}))

    class StallingPool(FakePool):
        def next_done(self, timeout=None):
            moving = [j for j in self.pending if j.trial.number != 4]
            if not moving:  # only trial 4's folds left, still "training": the budget runs out meanwhile
                if self.pending:
                    clock["now"] += 1000.0
                return None
            job = moving[0]
            self.pending.remove(job)
            self.trained.append((job.trial.number, job.fold))
            return FoldDone(job, self.score(job.params, job.fold))

    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("the search never ended")))
    signal.alarm(30)
    try:
        result, trials = search(StallingPool(), trials=8, folds=3, budget=Budget(end=1000.0 + 500, seconds=500))
    finally:
        signal.alarm(0)
    assert trials[4].state == optuna.trial.TrialState.FAIL and trials[4].user_attrs.get("stopped_by_budget")
    assert [t.state for t in trials[5:8]].count(optuna.trial.TrialState.RUNNING) == 0  # all judged and told


def test_a_trial_is_expected_to_end_when_its_running_folds_and_then_its_queued_ones_do():
    """Counting running folds as whole ones cut a CatBoost trial that had 7.4 s of work left
    on paper but ended 5 s later in fact (a 30 s budget)."""
    from trialfuse.driver.budget import finish_estimate

    assert finish_estimate(queued=3, running=[], per_fold=4.0, workers=2) == 8.0
    assert finish_estimate(queued=2, running=[3.0], per_fold=4.0, workers=2) == 5.0  # 1 s left on the running fold
    assert finish_estimate(queued=0, running=[1.0, 6.0], per_fold=4.0, workers=2) == 3.0  # overdue: ends any moment
    assert finish_estimate(queued=1, running=[0.0, 0.0, 0.0], per_fold=2.0, workers=2) == 4.0


def test_the_fake_pool_keeps_the_pool_contract_the_scheduler_is_written_against():
    from trialfuse.transport.contracts import FoldPool

    assert isinstance(FakePool(), FoldPool)


def test_an_nn_trial_from_before_slices_of_rows_rebuilds_with_whole_fold_steps():
    """A study written before the NN's `batch_size` (a resumed run, a saved study): its trials
    have no such parameter and still rebuild, at the whole-fold steps they trained with."""
    from trialfuse.catalog import params_from_trial

    study = optuna.create_study()
    study.enqueue_trial(FAMILIES["nn"].start[0])
    asked = study.ask()
    FAMILIES["nn"].suggest(asked)
    older = {k: v for k, v in asked.params.items() if k != "batch_size"}
    frozen = optuna.trial.create_trial(params=older, distributions={k: asked.distributions[k] for k in older},
                                       value=0.5)
    assert params_from_trial("nn", frozen)["batch_size"] == 0
    assert params_from_trial("nn", frozen)["hidden_layers"] == [128, 64]
    study.tell(asked, 0.5)
    assert params_from_trial("nn", study.trials[0])["batch_size"] == FAMILIES["nn"].start[0]["batch_size"] > 0


def test_a_trial_that_cannot_finish_in_time_is_cut_only_where_it_loses_queued_folds():
    """Past its estimate a trial with folds still queued is cut and its running folds stop; one
    whose folds all run is left to finish (the deadline still stops it). Before, both had their
    running folds stopped, and the second then came back cut though the scheduler had let it be."""
    from trialfuse.driver.fold_verdicts import InFlight, Outcome
    from trialfuse.driver.scheduler import FamilySearch, SearchSettings

    class Progress(FakePool):
        workers = 2

        def __init__(self):
            super().__init__()
            self.stops: set[int] = set()

        def progress(self, trial):
            return (1, [1.0]) if trial.number == 0 else (0, [1.0, 1.0])  # trial 1: both folds running

        def cancel(self, trial, stop_running=True):
            if stop_running:
                self.stops.add(trial.number)
            return 1 if trial.number == 0 else 0

    pool = Progress()
    search = FamilySearch("lightgbm", optuna.storages.InMemoryStorage(), SearchSettings(None, 2, 0), pool)
    search.flight = {n: InFlight(trial=None, peers=None) for n in (0, 1)}
    search.fold_seconds, search.deadline = [10.0], time.monotonic() + 5.0  # folds of 10 s, 5 s left
    search._drop_what_cannot_finish()
    assert search.flight[0].outcome == Outcome.CUT and search.flight[1].outcome is None
    assert pool.stops == {0}


class OneEndlessFold(FakePool):
    """One worker whose fold never ends by itself (CatBoost on 11 classes took 25-30 s a fold where
    LightGBM took 3): it answers `cut` only once the trial is cancelled (its stop file)."""

    def __init__(self):
        super().__init__()
        self.running, self.started, self.stopped_at = None, None, None

    def next_done(self, timeout=None):
        if self.running is None and self.pending:
            self.running, self.started = self.pending.pop(0), time.monotonic()
        if self.running is None or self.stopped_at is None:
            time.sleep(0.02)
            return None
        job, self.running = self.running, None
        return FoldDone(job, {"status": "error", "error": "DeadlineReached: stopped by the time budget", "cut": True})

    def progress(self, trial):
        queued = sum(job.trial == trial for job in (*self.pending, *self.staged))
        on = self.running is not None and self.running.trial == trial
        return queued, [time.monotonic() - self.started] if on else []

    def cancel(self, trial, stop_running=True):
        if stop_running and self.running is not None and self.running.trial == trial and self.stopped_at is None:
            self.stopped_at = time.monotonic()
        return super().cancel(trial, stop_running)  # the queued folds it dropped; the stopped fold answers `cut`


def test_a_first_fold_that_outlasts_what_its_trial_can_afford_is_stopped_long_before_the_deadline():
    """No fold is done, so no fold time is known; the running fold's time so far is a floor on a
    fold's: once the trial's other folds at that pace end past the deadline, it is cut and the
    family asks no more."""
    pool = OneEndlessFold()
    began = time.monotonic()
    budget = Budget(end=began + REPORT_SECONDS + 8.0, seconds=8.0)
    result, trials = search(pool, trials=None, folds=3, prune=False, budget=budget, must_start=False)
    assert pool.stopped_at is not None and pool.stopped_at - began < 5.0  # the deadline is about 6.4 s in
    assert result.trials_complete == 0 and "cannot finish a trial" in result.reason
    assert "(at least " in result.reason  # no fold done: the running fold's time is a floor, not an estimate
    asked = [t for t in trials if t.state != optuna.trial.TrialState.WAITING]  # (cut ones are queued again)
    assert len(asked) == FAMILIES["lightgbm"].in_flight  # the first window, cut; nothing asked after it


@pytest.mark.parametrize(("outcome", "stopped"), [("failed", {0}), ("cut", {0, 1})])
def test_a_trial_left_undecided_keeps_its_running_folds_unless_the_deadline_passed(outcome, stopped):
    """A family that keeps failing drops its trials' unstarted folds: a trial that lost some ends
    failed and its running folds stop; one whose folds all run is left to finish, so they must
    not be stopped (with stop files read without a deadline, they answered `cut` and the trial
    counted as stopped by a budget the run did not have). Past the deadline every one stops."""
    from trialfuse.driver.fold_verdicts import InFlight, Outcome, drop_unstarted

    class Recording:
        def __init__(self):
            self.stops: set[int] = set()

        def cancel(self, trial, stop_running=True):
            if stop_running:
                self.stops.add(trial.number)
            return 1 if trial.number == 0 else 0  # trial 0 had a fold queued; trial 1's all run

    pool = Recording()
    flight = {n: InFlight(trial=None, peers=None) for n in (0, 1)}
    drop_unstarted(flight, "lightgbm", pool, Outcome(outcome), "why")
    assert pool.stops == stopped
    assert flight[0].outcome == Outcome(outcome) and flight[1].outcome is None


class EndlessFolds(OneEndlessFold):
    """Every fold runs until its trial is cancelled: a table so big that no trial of any family
    finishes in the budget (a million rows at 60 s)."""

    def next_done(self, timeout=None):
        done = super().next_done(timeout)
        if done is not None:
            self.stopped_at = None  # the next fold runs until it is stopped in its turn
        return done


@pytest.mark.timeout(60)
def test_the_rescue_trial_stops_at_the_budgets_last_end_and_then_there_is_no_model(monkeypatch):
    """With no trial finished at the deadline, one more trial runs so that the run saves a model,
    but not past what the budget's promise allows (`Budget.last_end`): with no deadline of its
    own, a million rows' LightGBM rescue took a 60 s run to 303 s (a hang here)."""
    from trialfuse.driver import budget as budgets

    monkeypatch.setattr(budgets, "PROMISED_SECONDS", 8.0)  # the rescue's end 2.9 s after the budget's, not 9.9
    pool = EndlessFolds()
    began = time.monotonic()
    budget = Budget(end=began + 1.0, seconds=1.0)  # the first trials are cut 0.8 s in
    assert budget.last_end() == pytest.approx(began + 3.9)
    result, trials = search(pool, trials=None, folds=3, prune=False, budget=budget, must_start=True)
    assert time.monotonic() < budget.last_end() + 2.0
    assert result.trials_complete == 0 and result.status == "skipped" and result.stopped_by_budget
    assert result.reason and any(t.user_attrs.get("stopped_by_budget") for t in trials)
    [rescue] = [t for t in trials if "train_rows" in t.user_attrs]  # cut: queued once more, for a rerun to ask
    assert rescue.user_attrs["stopped_by_budget"] and "retry_of" in rescue.user_attrs  # a retry: a rerun had lost it
    assert [t.system_attrs["fixed_params"] for t in trials if t.user_attrs.get("retry_of") == rescue.number] == [
        rescue.params]
