"""When the search stops under --timeout: a share of the budget first, then the leader's retrain."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from trialfuse.driver.budget import (
    EXPORT_FIRST_SECONDS,
    EXPORT_SECONDS_PER_FOLD,
    FOLD_SERVING_SECONDS,
    REPORT_SECONDS,
    Budget,
    final_seconds,
    parallel_seconds,
    retrain_seconds,
    say_seconds,
)


@pytest.mark.parametrize(("seconds", "kept"), [(10, 2.0), (20, 4.0), (30, 6.0), (60, 12.0), (600, 120.0)])
def test_before_any_trial_a_fifth_is_kept(seconds, kept):
    assert Budget(end=1000.0, seconds=seconds).search_end() == pytest.approx(1000.0 - kept)


def test_a_short_budget_keeps_a_fifth_for_the_report_not_five_seconds():
    """At --timeout 10s a fixed 5 s for the report was half the budget: the search stopped at
    half time and left the ensemble "0.0 s" and the explanation nothing."""
    short = Budget(end=1000.0, seconds=10.0)
    assert short.report_seconds == pytest.approx(2.0)
    assert short.search_end(1.0) == pytest.approx(1000.0 - 2.0 - 1.0)
    assert Budget(end=1000.0, seconds=60.0).report_seconds == REPORT_SECONDS


def test_then_the_reserve_is_the_leaders_retrain_and_the_report():
    budget = Budget(end=1000.0, seconds=600)
    assert budget.search_end(retrain_seconds([2.0] * 5)) == pytest.approx(1000.0 - REPORT_SECONDS - 2.5)  # 10 s / 4
    assert budget.search_end(retrain_seconds([1000.0] * 5)) == pytest.approx(1000.0 - 300)  # at most half the budget
    assert budget.search_end(final_seconds([1000.0] * 5, from_folds=True)) == pytest.approx(  # served by its folds
        1000.0 - REPORT_SECONDS - FOLD_SERVING_SECONDS)
    nn = final_seconds([1000.0] * 5, from_folds=True, exported=True)  # an NN's folds are exported when served
    assert budget.search_end(nn) == pytest.approx(1000.0 - REPORT_SECONDS - FOLD_SERVING_SECONDS
                                                  - EXPORT_FIRST_SECONDS - 5 * EXPORT_SECONDS_PER_FOLD)
    # chile at 60 s: a stack of three NNs and five trees ran in 3.4 s; estimated within the 11 s it had
    members = [nn] * 3 + [final_seconds([0.1] * 5, from_folds=True)] * 5
    assert parallel_seconds(members, 2) < 11.0


def test_the_retrain_takes_about_the_folds_total_over_k_minus_one():
    assert retrain_seconds([3.0, 3.0, 3.0]) == pytest.approx(4.5)
    assert retrain_seconds([4.0]) == pytest.approx(4.0)


def test_work_may_start_if_its_estimate_ends_within_the_budgets_tolerance():
    import time

    budget = Budget(end=time.monotonic() + REPORT_SECONDS + 10.0, seconds=60.0)  # 10 s left, 6 s tolerance
    assert budget.fits(9.0) and budget.fits(15.5)
    assert not budget.fits(17.0)


def test_the_explanation_must_end_where_the_reports_share_begins_and_a_late_one_costs_a_warning(tmp_path):
    from trialfuse.driver.explanation import explain_winner

    class Pool:
        def explain(self, model_dir, X, y, seed, deadline):
            self.deadline = deadline
            raise TimeoutError("permutation importance on 100 rows needs about 9.0 s, 2.0 s left")

    pool = Pool()
    warnings = explain_winner(pool, tmp_path, np.zeros((4, 2)), np.zeros(4), 0,
                              Budget.starting_now(time.monotonic(), 60))
    assert pool.deadline == pytest.approx(time.time() + 60 - REPORT_SECONDS, abs=1.0)
    assert warnings == ["no explanation of the winner in the time budget: permutation importance on 100 rows needs "
                        f"about 9.0 s, 2.0 s left (`trialfuse explain {tmp_path}` adds it)"]
    said: list[str] = []  # past the report's start (within the budget): no start said, no "-1.7 s given"
    late = Budget.starting_now(time.monotonic() - 60 + REPORT_SECONDS / 2, 60)
    assert explain_winner(Pool(), tmp_path, np.zeros((4, 2)), np.zeros(4), 0, late, said.append) == [
        f"no explanation of the winner: the time budget ran out (`trialfuse explain {tmp_path}` adds it)"]
    assert said == []
    nearly = Budget.starting_now(time.monotonic() - 60 + REPORT_SECONDS + 1.0, 60)  # 1 s left: nothing fits in it
    assert explain_winner(Pool(), tmp_path, np.zeros((4, 2)), np.zeros(4), 0, nearly, said.append) == [
        f"no explanation of the winner: the time budget ran out (`trialfuse explain {tmp_path}` adds it)"]
    assert said == []  # no "explaining the winner", then "no time left (-1.5 s given)"


def test_the_diagnostics_probe_runs_only_where_a_fold_of_its_trial_fits(tmp_path):
    from trialfuse.driver.run import SilentReporter, _diagnostics
    from trialfuse.driver.trial_records import FamilyResult

    class Pool:
        probes = 0

        def diagnose(self, family, params, seed, deadline=None):
            self.probes += 1
            return {"warnings": []}

    pool = Pool()
    nn = FamilyResult("nn", best_params={}, best_trial=0, best_fold_seconds=[9.0, 8.0, 10.0])
    three_left = Budget(end=time.monotonic() + REPORT_SECONDS + 3.0, seconds=60)
    [said] = _diagnostics(pool, nn, tmp_path, 0, SilentReporter(), three_left)
    assert re.fullmatch(r"nn: no diagnostics probe: it needs about 9\.0 s, (3\.0|2\.9) s of the time budget left", said)
    nn.best_fold_seconds = [1.4]  # a probe's line read "it needs about 1 s, 1 s ... left" (1.4 and 0.6)
    [said] = _diagnostics(pool, nn, tmp_path, 0, SilentReporter(),
                          Budget(end=time.monotonic() + REPORT_SECONDS + 0.6, seconds=60))
    assert re.search(r"needs about 1\.4 s, 0\.[56] s of the time budget left", said), said
    assert pool.probes == 0
    nn.best_fold_seconds = [2.0, 2.5, 1.5]
    assert _diagnostics(pool, nn, tmp_path, 0, SilentReporter(), three_left) == [] and pool.probes == 1

    class Late(Pool):  # the probe took longer than its trial's folds did, and met the report's share
        def diagnose(self, family, params, seed, deadline=None):
            raise RuntimeError("diagnose failed: DeadlineReached: stopped by the time budget or by the driver")

    assert _diagnostics(Late(), nn, tmp_path, 0, SilentReporter(), three_left) == [
        "nn: no diagnostics probe: the time budget ran out while it trained"]


def test_a_message_says_short_durations_in_tenths():
    """"cannot finish a trial in the 0 s left (about 0 s each)" read as a contradiction on a 5 s run."""
    said = [say_seconds(s) for s in (0.44, 0.31, 9.94, 12.4)]
    assert said == ["0.4 s", "0.3 s", "9.9 s", "12 s"]
    assert say_seconds(-3.0) == "0.0 s"  # the deadline passed: nothing left, not a negative



def test_a_run_that_saves_no_model_is_one_line_and_exit_code_1(run_main, survivors_csv, tmp_path, monkeypatch):
    """No model within --timeout (a million rows at 60 s) or every family failed: the run trained
    but has nothing to save; one line naming each family's reason, not a traceback."""
    from trialfuse import api
    from trialfuse.errors import RunFailed

    def no_model(opts, reporter=None):
        raise RunFailed("no model finished within --timeout 10s (catboost: cannot finish a trial in the 6.0 s "
                        "left (at least 13 s each)); rerun with a longer --timeout (the cut trials are asked first)")

    monkeypatch.setattr(api, "search_and_report", no_model)
    code, _, err = run_main("run", survivors_csv, "--target", "score", "--timeout", "10s", "--out", tmp_path / "r",
                            "--quiet")
    assert code == 1 and err.count("\n") == 1 and err.startswith("trialfuse: error: no model finished within")


def test_a_saved_model_trained_on_a_sample_of_each_fold_says_so():
    from trialfuse.driver.run import sampled_note
    from trialfuse.driver.trial_records import FamilyResult
    from trialfuse.task import NUMBERS

    rescued = FamilyResult("lightgbm", best_trial=4, best_train_rows=10_000)
    [line] = sampled_note(rescued, 700_000, 60, NUMBERS)
    assert line.startswith("lightgbm's best trial (4) was trained on 10,000 of each fold's 700,000 training rows, as")
    assert sampled_note(rescued, 9_000, 60, NUMBERS) == []
    assert sampled_note(FamilyResult("lightgbm", best_trial=4), 700_000, 60, NUMBERS) == []


def test_a_saved_model_trained_on_screened_columns_says_so():
    """A last-chance trial on a wide table trains on the columns most related to the target."""
    from trialfuse.driver.run import sampled_note
    from trialfuse.driver.trial_records import FamilyResult
    from trialfuse.task import NUMBERS

    screened = FamilyResult("lightgbm", best_trial=2, best_params={"num_leaves": 31, "screen": 100})
    [line] = sampled_note(screened, 1_750, 2_000, NUMBERS)
    assert line.startswith("lightgbm's best trial (2) was trained on the 100 of its 2,000 columns most related to "
                           "the target, as a short budget asks")
    screened.best_train_rows = 10_000
    [line] = sampled_note(screened, 87_500, 2_000, NUMBERS)
    assert "on 10,000 of each fold's 87,500 training rows and on the 100 of its 2,000 columns" in line
    assert sampled_note(FamilyResult("lightgbm", best_trial=2, best_params={"screen": 100}), 1_750, 80, NUMBERS) == []


def test_a_screened_winner_that_beat_its_settings_on_every_column_is_not_called_a_short_budgets():
    """`--trials 1` on a wide table, no --timeout: the screened first trial and its retry on every
    column both ran and the screened one scored higher; the note blamed "a short budget". "No
    better", not "lower": a log-loss is shown as it reads, lower where it scored better."""
    from trialfuse.catalog import FAMILIES
    from trialfuse.driver.run import sampled_note
    from trialfuse.driver.trial_records import FamilyResult, summarize
    from trialfuse.task import NUMBERS

    study = optuna.create_study(direction="maximize")
    first = study.ask()
    FAMILIES["lightgbm"].suggest(first)
    first.set_user_attr("screen", 100)
    study.tell(first, 0.1233)
    screened = FamilyResult("lightgbm")
    summarize(study, screened)
    [line] = sampled_note(screened, 1_750, 2_000, NUMBERS)
    assert "as a short budget asks" in line  # its settings not yet trained on every column
    study.enqueue_trial(first.params, user_attrs={"retry_of": 0})
    retry = study.ask()
    FAMILIES["lightgbm"].suggest(retry)
    study.tell(retry, 0.1167)
    summarize(study, screened)
    assert screened.best_trial == 0 and screened.best_whole_score == pytest.approx(0.1167)
    [line] = sampled_note(screened, 1_750, 2_000, NUMBERS)
    assert line == ("lightgbm's best trial (0) was trained on the 100 of its 2,000 columns most related to the "
                    "target; its settings on every row and column scored no better (CV R² 0.1167 against 0.1233)")


def test_reading_a_good_part_of_the_budget_is_said_with_what_reads_faster(run_main, survivors_csv, tmp_path,
                                                                          monkeypatch):
    """The budget counts from the start: a million-row CSV took 20 s of --timeout 60s to read,
    and nothing said where the time went."""
    from trialfuse.driver import run
    from trialfuse.driver.run import reading_note

    assert reading_note(Path("big.csv"), 20.4, 60) == [
        "reading the table took 20 s of --timeout 60s; a Parquet copy of it reads in a fraction of that "
        "(pandas' to_parquet)"]
    assert reading_note(Path("big.parquet"), 20.4, 60) == ["reading the table took 20 s of --timeout 60s"]
    assert reading_note(Path("big.csv"), 14.0, 60) == reading_note(Path("big.csv"), 20.4, None) == []
    slow = run.load_table

    def slow_load(*args, **kwargs):
        time.sleep(2.5)
        return slow(*args, **kwargs)

    monkeypatch.setattr(run, "load_table", slow_load)
    code, _, err = run_main("run", survivors_csv, "--target", "score", "--models", "lightgbm", "--trials", "1",
                            "--folds", "2", "--timeout", "8s", "--no-explain", "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    assert re.search(r"warning: reading the table took [2-9]\.\d s of --timeout 8s; a Parquet copy", err), err


def test_columns_left_out_as_holding_nothing_are_said_by_reason():
    """Constant and all-blank columns were dropped silently (listed only in metadata.json)."""
    from trialfuse.driver.run import dropped_note

    assert dropped_note({}) == []
    assert dropped_note({"a": "constant", "b": "constant", "c": "all values missing"}) == [
        "3 columns not used: constant ('a', 'b'); all values missing ('c')"]
    assert dropped_note({f"k{i}": "constant" for i in range(8)}) == [
        "8 columns not used: constant ('k0', 'k1', 'k2', 'k3', 'k4' and 3 more)"]
