"""When the search stops under --timeout: a share of the budget first, then the leader's retrain."""
from __future__ import annotations

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
)


@pytest.mark.parametrize(("seconds", "kept"), [(10, 4.0), (30, 6.0), (60, 12.0), (600, 120.0)])
def test_before_any_trial_a_fifth_is_kept_at_least_five_seconds_at_most_forty_percent(seconds, kept):
    assert Budget(end=1000.0, seconds=seconds).search_end() == pytest.approx(1000.0 - kept)


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
