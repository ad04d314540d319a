"""What the saved model's holdout predictions say beside its score (driver/final_model.py)."""
from __future__ import annotations

import numpy as np

from trialfuse.driver.final_model import _classes_never_predicted
from trialfuse.task import NUMBERS, Kind, Task


def test_a_class_no_holdout_row_is_labelled_is_named_with_its_rows():
    """A 0.1% class (200 of 200,000 rows) scored accuracy 0.999 and balanced accuracy 0.5:
    every row labelled "no", and nothing said."""
    fraud = Task(Kind.BINARY, ("no", "yes"), "log_loss")
    y = np.r_[np.zeros(990), np.ones(10)]
    ranked = np.column_stack([1 - np.r_[np.full(990, 0.01), np.full(10, 0.3)], np.r_[np.full(990, 0.01),
                                                                                        np.full(10, 0.3)]])
    [line] = _classes_never_predicted(fraud, y, ranked)
    assert "'yes' (10 of 1000 rows are)" in line and "--class-weight balanced" in line
    found = ranked.copy()
    found[-1] = [0.2, 0.8]  # one row labelled yes
    assert _classes_never_predicted(fraud, y, found) == []
    bands = Task(Kind.MULTICLASS, ("a", "b", "c"), "log_loss")
    assert _classes_never_predicted(bands, np.array([0, 1, 1]), np.eye(3)[[0, 0, 0]]) == [
        "no holdout row is predicted 'b' (2 of 3 rows are): the model makes it the likeliest class for no row; "
        "the probability columns still rank its rows, and --class-weight balanced predicts more of them"]
    weighed = Task(Kind.MULTICLASS, ("a", "b", "c"), "log_loss", "balanced")  # (it had read "labelled", and
    [line] = _classes_never_predicted(weighed, np.array([0, 1, 1]), np.eye(3)[[0, 0, 0]])  # asked for the option
    assert "--class-weight" not in line  # the run had used; a new user's finds)
    assert _classes_never_predicted(bands, np.array([0, 0, 1]), np.eye(3)[[0, 0, 1]]) == []  # c: no holdout row
    assert _classes_never_predicted(NUMBERS, np.array([1.0, 2.0]), np.array([1.0, 1.0])) == []


def test_a_holdout_of_one_target_value_is_said_to_score_nothing():
    """A new user's target, 5.0 on every row but one: `--task regression` printed "holdout R² 1.0000"."""
    from trialfuse.driver.final_model import _one_value

    [line] = _one_value(NUMBERS, np.full(400, 5.0))
    assert line.startswith("every holdout row's target is 5: its R² is undefined")
    assert _one_value(NUMBERS, np.array([5.0, 5.0000001])) == []
    assert _one_value(Task(Kind.BINARY, ("a", "b"), "log_loss"), np.zeros(4)) == []



def test_a_sampled_winner_is_refit_on_every_row_where_that_ends_in_time_else_on_as_many_as_its_folds_had(tmp_path):
    """A last-chance trial trained each fold on 10,000 rows; `--refit` retrained it on every
    search row with no deadline (minutes past --timeout where a fold on every row is what did
    not fit), and the metadata named the search rows as what it was trained on."""
    import json
    import time

    import optuna

    from trialfuse.driver import final_model
    from trialfuse.driver.budget import Budget
    from trialfuse.driver.table import Table
    from trialfuse.driver.trial_records import FamilyResult

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 2)), rng.normal(size=100)
    sealed, rest = np.arange(80, 100), np.arange(80)

    class Pool:  # a refit on every row takes 5 s here; one on a sample, no time
        def __init__(self):
            self.asked = []

        def retrain(self, retrains, X_holdout):
            self.asked.append([(r.train_rows, r.deadline) for r in retrains])
            return [{"status": "error", "error": "DeadlineReached", "cut": True}
                    if r.deadline is not None and r.train_rows is None and time.time() + 5 > r.deadline else
                    {"status": "complete", "model_file": "model.txt", "predictions": y[sealed].tolist(), "rounds": 10,
                     "seconds": 1.0, "train_rows": r.train_rows or len(rest)} for r in retrains]

    winner = FamilyResult("lightgbm", best_params={}, best_trial=4, cv_score_mean=0.5, cv_score_folds=[0.5],
                          best_rounds=[10], best_fold_seconds=[1.0], best_train_rows=30)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="lightgbm", storage=storage)
    table = Table(X, y, ["a", "b"], "y")
    for budget, asked, sampled in ((None, [[(None, None)]], None),  # no --timeout: every row, however long
                                   (Budget.starting_now(time.monotonic(), 60), [[(None, "set")]], None),
                                   (Budget(time.monotonic() - 10, 3), [[(None, "set")], [(30, None)]], 30)):
        pool, out = Pool(), tmp_path / str(budget)
        chosen = final_model.plan(winner, storage, None, y[rest], 2, budget, refit=True)
        assert final_model.train_and_save(pool, chosen, winner, table, rest, sealed, out, 0, budget)["winner"] == \
            "lightgbm"
        assert [[(rows, deadline and "set") for rows, deadline in call] for call in pool.asked] == asked
        metadata = json.loads((out / "best_model" / "metadata.json").read_text())
        assert (metadata["train_rows"], metadata["sampled_train_rows"]) == (80, sampled)


def test_a_holdout_no_better_than_the_prior_names_far_target_values_where_there_are_some():
    """5 targets of 1e6 among 2,000 with a feature that sets the rest: the R² run's line blamed the
    features ("may not predict the target"), which predicted the ordinary rows to 0.44 by MAE."""
    import pandas as pd

    from trialfuse.driver.final_model import _no_better_than_prior
    from trialfuse.driver.table import load_table

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=2000)})
    frame["y"] = 3 * frame.a + rng.normal(size=2000)
    rest = np.arange(1600)
    clean = load_table(frame, "y")
    assert "the features may not predict the target" in _no_better_than_prior(clean, rest, -0.01, 0.0)[0]
    frame.loc[[3, 50, 700, 900, 1500], "y"] = 1e6
    [said] = _no_better_than_prior(load_table(frame, "y"), rest, -0.0024, -0.0020)
    assert said.endswith("(R² -0.0024 against -0.0020): the few target values far from the rest (said before "
                         "training) may be why")
    assert _no_better_than_prior(load_table(frame, "y"), rest, 0.5, 0.0) == []
    # by MAE (and its median prior) a few far values barely move either score: not named there
    assert "the features may not predict" in _no_better_than_prior(load_table(frame, "y", metric="mae"), rest,
                                                                   -2.0, -1.9)[0]
