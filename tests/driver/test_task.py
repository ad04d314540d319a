"""The task: what `auto` decides from a target column, the one-line refusals, the metrics and splits."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from trialfuse.driver.splits import check_class_sizes, classes_fill, holdout_split, kfold_indices
from trialfuse.driver.target import MAX_CLASSES, decide
from trialfuse.errors import UserError
from trialfuse.task import NUMBERS, Kind, Task


def kind_of(values, asked="auto"):
    task, y, line = decide(pd.Series(values), "t", asked)
    return task.kind, line


@pytest.mark.parametrize("values, kind", [
    (["yes", "no", "no", "yes"], Kind.BINARY),  # text
    ([True, False, True], Kind.BINARY),  # boolean
    (pd.Categorical(["a", "b", "c", "a"]), Kind.MULTICLASS),  # category
    (["red", "green", "blue", "red"], Kind.MULTICLASS),
    ([0, 1, 1, 0], Kind.BINARY),  # 0/1 is classes, not a regression scored by R²
    ([1.0, 2.0, 2.0, 1.0], Kind.BINARY),
    ([-1, 1, 1], Kind.BINARY),
    ([0, 1, 2, 2, 1], Kind.MULTICLASS),  # label-encoded classes 0..K-1
    ([0.5, 1.7, 2.2, 3.9], Kind.REGRESSION),
    (list(range(50)), Kind.REGRESSION),  # 0..49: too many values to be codes
])
def test_auto_reads_the_target_column(values, kind):
    assert kind_of(values)[0] == kind


def test_whole_numbers_0_to_k_read_as_classes_say_that_counts_are_numbers_by_task_regression():
    """A new user's Poisson count, 0..7 (1,106 rows of 0, one of 7), was read as eight classes and
    refused ("class 7 has 1 row(s): too few ...") with no word of --task regression."""
    from trialfuse.driver.splits import check_class_sizes

    counts = pd.Series(np.r_[np.zeros(50), np.ones(30), np.full(10, 2), [3]].astype(int))
    task, y, line = decide(counts, "visits")
    assert task.kind == Kind.MULTICLASS and "if they are counts, --task regression reads them as numbers" in line
    with pytest.raises(UserError, match="class 3 has 1 row.*if they are counts, --task regression reads them"):
        check_class_sizes(task, y, 0.2, 3, 0)
    fraud, y, _ = decide(pd.Series([0] * 200 + [1] * 2), "fraud")  # 0/1 with a rare class: no counts there
    with pytest.raises(UserError, match="each class needs about 4\\)$"):
        check_class_sizes(fraud, y, 0.2, 3, 0)
    graded = pd.Series(pd.Categorical([1, 2, 3, 2] * 10))  # a category of numbers, asked as numbers: read as
    assert decide(graded, "grade", "regression")[1][:4].tolist() == [1.0, 2.0, 3.0, 2.0]  # them (IndexError before)
    words, y, line = decide(pd.Series(["a"] * 50 + ["b"] * 30 + ["c"]), "grade")
    with pytest.raises(UserError, match="too few for a 0.2 holdout plus 3 folds \\(each class needs about 4\\)$"):
        check_class_sizes(words, y, 0.2, 3, 0)  # text classes: no such hint
    assert "--task regression" not in line


def test_few_whole_values_that_are_not_codes_stay_numbers_with_a_hint():
    kind, line = kind_of([1, 2, 3, 4, 5, 3])  # a 1-5 rating: ordered numbers, so regression by default
    assert kind == Kind.REGRESSION and "--task multiclass" in line
    assert kind_of([1, 2, 3, 4, 5, 3], "multiclass")[0] == Kind.MULTICLASS  # unless asked
    assert kind_of([0, 1, 1, 0], "regression") == (Kind.REGRESSION, None)  # 0/1 as numbers, when asked


def test_classes_keep_their_own_values_in_order_and_y_holds_their_codes():
    task, y, line = decide(pd.Series(["yes", "no", "maybe", "no"]), "answer")
    assert task.classes == ("maybe", "no", "yes") and y.tolist() == [2.0, 1.0, 0.0, 1.0]
    assert "multiclass" in line and "'answer'" in line and "log-loss" in line
    numbers, y, _ = decide(pd.Series(np.array([10, 2, 2, 10])), "n")
    assert numbers.classes == (2, 10) and type(numbers.classes[0]) is int and y.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert list(task.labels(np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))) == ["yes", "maybe"]


def test_text_classes_meet_a_column_that_reads_as_numbers():
    """A model of text classes explained or scored on a table whose target column pandas reads
    as numbers: the numbers match no class (NaN), and no ValueError from casting "yes" to float."""
    task, _, _ = decide(pd.Series(["yes", "no", "yes"]), "answer")
    assert np.isnan(task.encode(pd.Series([1.0, 0.0]))).all()
    numbers, _, _ = decide(pd.Series(np.array([0, 1, 1])), "n")
    assert numbers.encode(pd.Series([1.0, 0.0, 2.0]))[:2].tolist() == [1.0, 0.0]  # 1.0 read back is the class 1
    digits = Task(Kind.MULTICLASS, ("1", "10", "2"))  # text classes that read as numbers in a CSV
    np.testing.assert_array_equal(digits.encode(pd.Series([2, 1, 10, 3, np.nan])), [2.0, 0.0, 1.0, np.nan, np.nan])


def test_text_that_is_numbers_throughout_is_decided_as_those_numbers():
    """A Parquet or JSON target of strings "12.5", "7" (or numbers held as Python objects): as a
    CSV reader would read them; where two texts are one number ("007", "7") they are codes."""
    prices = [str(x / 4) for x in range(40)]
    task, y, _ = decide(pd.Series(prices), "price")
    assert task.kind == Kind.REGRESSION and y.dtype == np.float64 and y[:3].tolist() == [0.0, 0.25, 0.5]
    task, y, _ = decide(pd.Series([1.5, 2.5, 4.0, 7.25], dtype=object), "price")
    assert task.kind == Kind.REGRESSION and y.tolist() == [1.5, 2.5, 4.0, 7.25]
    task, _, line = decide(pd.Series(["1", "2", "3", "2"] * 5), "species")  # few whole values: numbers, hinted
    assert task.kind == Kind.REGRESSION and "--task multiclass" in line
    codes, y, _ = decide(pd.Series(["007", "7", "07", "7"] * 5), "agent")
    assert codes.kind == Kind.MULTICLASS and codes.classes == ("007", "7", "07") and y[:4].tolist() == [0, 1, 2, 1]
    zeros, _, said = decide(pd.Series(["01", "02", "03", "02"] * 5), "grade")  # codes too, though numbers apart
    assert zeros.kind == Kind.MULTICLASS and zeros.classes == ("01", "02", "03")  # (searched as a 1-3 rating before)
    assert "its values are codes ('01' is written with a leading zero): --task regression reads them" in said
    assert decide(pd.Series(["0", "0.5", "10", "0.25"] * 5), "dose")[0].kind == Kind.REGRESSION  # no code here
    labels, _, _ = decide(pd.Series(["0", "1", "1"]), "churn")  # classes as numbers too: the text stays the label
    assert labels.kind == Kind.BINARY and labels.classes == ("0", "1")
    with pytest.raises(UserError, match="constant"):  # asked for numbers, they are one number
        decide(pd.Series(["007", "7", "07"]), "agent", "regression")
    for labels in (["2023_01", "2023_02", "2023_03"], [" 7 ", "8", "9"]):  # no CSV reader reads these as numbers
        assert decide(pd.Series(labels * 5), "period")[0].kind == Kind.MULTICLASS
    category = pd.Series(pd.Categorical([1.5, 2.5, 3.7, 4.1, 5.2] * 4))  # a category's values are classes
    assert decide(category, "grade")[0].kind == Kind.MULTICLASS


def test_two_classes_that_read_the_same_are_refused():
    """1 and "1" (a sloppy JSON file): predict would name both probability columns probability_1."""
    with pytest.raises(UserError, match="holds '1' both as a number and as text"):
        decide(pd.Series([1, "1", "a"] * 10, dtype=object), "y")


@pytest.mark.parametrize("values, asked, message", [
    (["a", "a", "a"], "auto", "one class only"),
    (list(range(214)), "binary", "--task binary needs two classes; target column 't' has 214"),
    ([f"id{i}" for i in range(MAX_CLASSES + 1)], "auto", "use --task regression"),
    (["a", "b", "c"], "binary", "--task binary needs two classes"),
    (["a", "b", None], "auto", "1 missing or infinite value"),
    (["a", "b", "c"], "regression", "not numeric"),
    ([*map(str, range(20)), "high"], "auto",  # numbers with a stray text: no --task was asked for
     "not numeric (e.g. 'high'): 1 of its 21 values are text; clean them to search it as numbers, or --task "),
    ([3.0, 3.0, 3.0], "auto", "constant"),
    ([1.0, np.inf, 2.0], "auto", "missing or infinite value(s) (first at row 1)"),
    (["1.5", "2.5", "NaN", "-inf", "3"], "auto", "2 missing or infinite value(s) (first at row 2)"),  # as text
    ([0, 1], "ranking", "--task must be one of"),
])
def test_a_bad_target_is_one_clear_line(values, asked, message):
    with pytest.raises(UserError, match=re.escape(message)):
        decide(pd.Series(values), "t", asked)


def test_a_metric_must_belong_to_the_task():
    assert decide(pd.Series(["a", "b"]), "t", metric="roc_auc")[0].metric_name == "roc_auc"
    assert decide(pd.Series(["a", "b"]), "t", metric="ROC-AUC")[0].metric_name == "roc_auc"  # as --class-weight
    with pytest.raises(UserError, match="not a regression metric"):
        decide(pd.Series([0.5, 1.5, 2.5]), "t", metric="accuracy")


def test_numbers_can_be_searched_by_rmse_or_mae_and_report_all_three():
    """Regression had R² alone: an error in the target's units (RMSE, MAE) is what many users read."""
    y, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 4.0])
    for name, score in (("rmse", -np.sqrt((0.25 + 1.0) / 4)), ("mae", -1.5 / 4)):
        task = decide(pd.Series([0.5, 1.5, 2.5, 3.25]), "t", metric=name)[0]
        assert task.metric_name == name and task.score(y, predicted) == pytest.approx(score)
        assert task.show(task.score(y, predicted)) == f"{-score:.4f}"  # as people read it: positive
    assert Task().report(y, predicted) == pytest.approx({"r2": 1 - 1.25 / 5, "rmse": np.sqrt(1.25 / 4), "mae": 0.375})
    skewed = np.array([0.0, 0.0, 1.0, 100.0])  # the prior a model is read against: the best constant for the metric
    assert Task().prior(skewed, 2).tolist() == [25.25, 25.25] and Task().prior_name == "mean"
    by_mae = Task(Kind.REGRESSION, (), "mae")
    assert by_mae.prior(skewed, 2).tolist() == [0.5, 0.5] and by_mae.prior_name == "median"


def test_scores_are_higher_is_better_and_the_report_shows_log_loss_positive():
    task = Task(Kind.BINARY, ("no", "yes"), "log_loss")
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4], [0.9, 0.1]])
    assert task.score(y, p) == pytest.approx(-log_loss(y, p))
    report = task.report(y, p)
    assert report["log_loss"] == pytest.approx(log_loss(y, p)) and report["roc_auc"] == roc_auc_score(y, p[:, 1])
    assert report["accuracy"] == 0.8
    assert Task().score(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1.0  # R² for regression


def test_class_splits_are_stratified_and_seeded():
    y = np.array([0] * 80 + [1] * 20, dtype=np.float64)
    task = Task(Kind.BINARY, (0, 1), "log_loss")
    rest, sealed = holdout_split(len(y), 0.2, 3, task.strata(y))
    assert y[sealed].sum() == 4 and len(sealed) == 20  # the classes' shares in the holdout, exactly
    folds = kfold_indices(len(rest), 4, 3, task.strata(y[rest]))
    assert all(y[rest][val].sum() == 4 for _, val in folds)
    assert [v.tolist() for _, v in folds] == [v.tolist() for _, v in kfold_indices(len(rest), 4, 3, y[rest])]
    assert Task().strata(y) is None  # numbers: the plain shuffled split, as before tasks existed


def test_a_class_too_small_for_the_folds_is_refused_before_training():
    y = np.array([0] * 50 + [1] * 4, dtype=np.float64)
    task = Task(Kind.BINARY, ("common", "rare"), "log_loss")
    with pytest.raises(UserError, match="class 'rare' has 4 row"):
        check_class_sizes(task, y, 0.2, 5, seed=0)
    check_class_sizes(task, np.array([0] * 50 + [1] * 8, dtype=np.float64), 0.2, 5, seed=0)  # enough


def test_a_class_with_no_row_in_the_holdout_is_refused():
    """Three rows of 'rare' among 1,988 filled 3 folds but left the holdout none: its ROC-AUC was
    NaN, written into results.json as a bare NaN."""
    y = np.array([0] * 473 + [1] * 678 + [2] * 837 + [3] * 3, dtype=np.float64)  # the probe's table
    task = Task(Kind.MULTICLASS, ("high", "low", "mid", "rare"), "log_loss")
    _, sealed = holdout_split(len(y), 0.2, 0, task.strata(y))
    assert task.class_counts(y[sealed])[3] == 0  # what the old rule let through
    with pytest.raises(UserError, match="class 'rare' has 3 row"):
        check_class_sizes(task, y, 0.2, 3, seed=0)


def test_a_score_that_rounds_to_zero_is_shown_without_a_sign():
    assert NUMBERS.show(-0.00001) == "0.0000" and NUMBERS.show(-0.0013) == "-0.0013"


def test_the_task_travels_as_json():
    task = Task(Kind.MULTICLASS, ("a", 2, True), "accuracy")
    assert Task.from_json(task.to_json()) == task and Task.from_json(None) == Task()


def test_a_rerun_with_another_task_or_metric_is_refused_and_an_older_stamp_reads_as_regression():
    import optuna

    from trialfuse.driver import fingerprint

    X, y = np.zeros((4, 2)), np.array([0.0, 1.0, 0.0, 1.0])
    storage = optuna.storages.InMemoryStorage()
    binary = Task(Kind.BINARY, ("no", "yes"), "log_loss")
    fingerprint.stamp(storage, ["xgboost"], fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3, binary))
    for other, said in ((Task(), "task 'binary' (now 'regression'), --metric 'log_loss' (now 'r2')"),
                        (Task(Kind.BINARY, ("no", "yes"), "accuracy"), "another --metric 'log_loss' (now 'accuracy')"),
                        (Task(Kind.BINARY, ("no", "yes"), "log_loss", "balanced"),
                         "another --class-weight 'none' (now 'balanced')")):  # a new user read 'binary/log_loss/none'
        with pytest.raises(UserError, match=re.escape(said)):
            fingerprint.check_resume(storage, ["xgboost"], fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3, other),
                                     "here")
    fingerprint.check_resume(storage, ["xgboost"], fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3, binary), "here")
    with pytest.raises(UserError, match="or use a new --storage to start fresh$"):  # a database: not a new --out
        fingerprint.check_resume(storage, ["xgboost"], fingerprint.of_run(X, y, ["a", "b"], "t", 1, 0.2, 3, binary),
                                 "sqlite:///runs.db", storage_given=True)
    older = optuna.storages.InMemoryStorage()  # stamped before tasks existed: no "task" key, a regression search
    stamped = fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3)
    fingerprint.stamp(older, ["xgboost"], {k: v for k, v in stamped.items() if k != "task"})
    fingerprint.check_resume(older, ["xgboost"], stamped, "here")
    with pytest.raises(UserError, match="another task"):
        fingerprint.check_resume(older, ["xgboost"], fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3, binary),
                                 "here")
    previous = optuna.storages.InMemoryStorage()  # a search stamped by a version with another search space
    fingerprint.stamp(previous, ["xgboost"], {**stamped, "space": fingerprint.SPACE_VERSION - 1})
    with pytest.raises(UserError, match="another space .*no option brings the old back"):
        fingerprint.check_resume(previous, ["xgboost"], stamped, "here")


def test_a_reporter_written_before_tasks_gets_the_task_line_as_a_stage(tmp_path):
    """`task_decided` is optional on a Reporter: one without it (as users wrote them before
    classes) hears the task's line through `stage` instead of failing with AttributeError."""
    from trialfuse.driver.options import RunOptions
    from trialfuse.driver.run import compare_models

    class Told(Exception):
        pass

    class OlderReporter:
        def family_started(self, family, trials): ...
        def trial_finished(self, result): ...
        def family_finished(self, result): ...
        def watch(self, activity): ...

        def stage(self, message):
            raise Told(message)

    table = tmp_path / "t.csv"
    answers = ["yes", "no", "maybe"] * 20
    pd.DataFrame({"a": np.random.default_rng(0).normal(size=60), "answer": answers}).to_csv(table, index=False)
    with pytest.raises(Told, match="3 classes: 'maybe', 'no', 'yes'"):
        compare_models(RunOptions(data=table, target="answer", out=tmp_path / "run"), OlderReporter())


def test_a_record_reads_the_storage_it_names_where_that_exists(tmp_path):
    """An absolute journal path that exists is read as recorded, even beside an older journal in
    the run directory; a relative one (written before paths were absolute) falls back to the run
    directory's own journal."""
    from trialfuse.driver import run_dir
    from trialfuse.driver.run_record import RunRecord

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    for directory in (run, elsewhere):
        directory.mkdir()
        (directory / run_dir.JOURNAL).write_text("")
    record = object.__new__(RunRecord)  # only the storage and out fields matter here
    record.storage, record.out = str(elsewhere / run_dir.JOURNAL), str(run)
    assert record.storage_at(run) == str(elsewhere / run_dir.JOURNAL)
    record.out = str(elsewhere)  # the run was made in `elsewhere` and copied: the copy reads its own journal
    assert record.storage_at(run) == str(run / run_dir.JOURNAL)  # (a new user's find: its report named the first)
    record.storage = f"runs/x/{run_dir.JOURNAL}"
    assert record.storage_at(run) == str(run / run_dir.JOURNAL)
    record.storage = "postgresql://db/trials"
    assert record.storage_at(run) == "postgresql://db/trials"


def test_k_is_given_or_the_resumed_searchs_own_or_the_tasks_default():
    from trialfuse.driver.options import RunOptions, folds_of

    classes = Task(Kind.MULTICLASS, ("a", "b", "c"), "log_loss")
    common = np.repeat([0.0, 1.0, 2.0], 400)
    binary = Task(Kind.BINARY, ("a", "b"), "log_loss")
    assert (NUMBERS.default_folds(np.arange(50.0)), binary.default_folds(np.repeat([0.0, 1.0], 20))) == (8, 8)
    assert folds_of(RunOptions(data="t.csv"), NUMBERS, np.arange(50.0)) == 8
    assert folds_of(RunOptions(data="t.csv"), classes, common) == 5  # a tree per class per round: dearer folds
    assert folds_of(RunOptions(data="t.csv"), classes, common, stamped=3) == 3  # a rerun continues its search
    assert folds_of(RunOptions(data="t.csv", folds=4), classes, common, stamped=3) == 4  # --folds decides


@pytest.mark.parametrize(("rarest", "holdout", "k"), [(400, 0.2, 5), (399, 0.2, 8), (10, 0.2, 8), (9, 0.2, 5),
                                                      (16, 0.6, 5), (3, 0.2, 5)])
def test_several_classes_take_8_folds_where_one_is_rare_and_can_fill_them(rarest, holdout, k):
    """Under RARE_CLASS_ROWS rows a class's fold models gain more from 87.5% of them than the
    search loses in trials; where it cannot fill 8 folds beside the holdout, 5 (which a class of
    9 rows, or of 16 beside a 0.6 holdout, can; one of 3 is then refused at 5)."""
    from trialfuse.driver.options import RunOptions, folds_of

    classes = Task(Kind.MULTICLASS, ("a", "b", "c"), "log_loss")
    y = np.r_[np.repeat([0.0, 1.0], 1000), np.full(rarest, 2.0)]
    assert folds_of(RunOptions(data="t.csv", holdout=holdout), classes, y) == k
    assert classes.default_folds(np.r_[y, np.full(1000, 2.0)]) == 5  # not rare: the default


def test_a_rerun_counts_finished_trials_and_those_it_trains_again_the_orphans_included(tmp_path):
    """After Ctrl-C or a killed driver, the trials left RUNNING are queued again only once the
    search starts: the rerun's line said nothing of them (or "0 trial(s) there already")."""
    import optuna

    from trialfuse.driver.storage import Held, held_for_rerun, open_storage

    storage = open_storage(None, tmp_path)  # the run directory's journal: one driver, every RUNNING trial an orphan
    study = optuna.create_study(study_name="xgboost", storage=storage)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    study.enqueue_trial({"max_depth": 4})  # a portfolio start: not one of them
    left = study.ask({"max_depth": optuna.distributions.IntDistribution(2, 8)})  # left running by a killed driver
    assert left.params
    study.enqueue_trial({"max_depth": 3}, user_attrs={"retry_of": 7})  # cut by the budget: queued as the run ended
    assert held_for_rerun(storage, ["xgboost", "lightgbm"]) == Held(finished=1, again=2)


def test_classes_fill_reads_only_too_few_rows_as_too_few():
    """Every ValueError of the holdout split was "too few": seed=1.5 was refused as "class 'yes' has
    262 row(s): too few for a 0.25 holdout plus 3 folds"."""
    task = Task(Kind.BINARY, ("no", "yes"), "log_loss")
    y = np.array([0, 1] * 50, dtype=np.float64)
    assert classes_fill(task, y, 0.25, 3, seed=0) and not classes_fill(task, y[:6], 0.1, 2, seed=0)  # 1 sealed row
    with pytest.raises(ValueError, match="random_state"):  # scikit-learn's own words, not "too few"
        classes_fill(task, y, 0.25, 3, seed=1.5)


def test_class_weights_by_label_weigh_each_class_and_travel_as_json():
    """scikit-learn's {label: weight}: each class's rows weigh its weight (a class left out 1)."""
    task, y, line = decide(pd.Series(["no", "yes", "yes", "no", "maybe"] * 4), "t", class_weight={"yes": 5, "no": 2})
    assert task.classes == ("maybe", "no", "yes") and task.class_weight == (1.0, 2.0, 5.0)
    assert task.row_weights(y[:5]).tolist() == [2.0, 5.0, 5.0, 2.0, 1.0] and "classes weighted" not in line
    assert Task.from_json(task.to_json()) == task and "classes weighted maybe: 1, no: 2, yes: 5" in task.described
    many = Task("multiclass", classes=tuple(f"c{i}" for i in range(40)), metric_name=task.metric_name,
                class_weight=tuple(range(1, 41)))
    assert many.described.endswith("; classes weighted c0: 1, c1: 2, c2: 3, c3: 4, c4: 5, c5: 6, c6: 7, c7: 8, "
                                   "c8: 9, c9: 10, ...")  # 40 pairs before
    with pytest.raises(UserError, match="--class-weight names 'si', which is not a class of target column 't'"):
        decide(pd.Series(["no", "yes"] * 5), "t", class_weight={"si": 5})


def test_an_mae_search_from_before_the_objectives_were_searched_is_not_continued(tmp_path):
    """Its trials trained on squared error, and a retrain of one now would train on absolute error
    (the run's own) where it was scored on squared: another search, refused in one line. An R²
    study from before is still continued: nothing it trained on changed."""
    import optuna

    from trialfuse.driver import fingerprint

    X, y = np.zeros((4, 2)), np.arange(4.0)
    mae, older = Task(metric_name="mae"), optuna.storages.InMemoryStorage()
    now = fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3, mae)
    fingerprint.stamp(older, ["xgboost"], {k: v for k, v in now.items() if k != "objectives"})
    with pytest.raises(UserError, match="another model objective 'squared error' \\(now 'squared error or absolute "
                                        "error': this version's models train on these under --metric mae or for a "
                                        "count target"):
        fingerprint.check_resume(older, ["xgboost"], now, "here")
    fingerprint.stamp(same := optuna.storages.InMemoryStorage(), ["xgboost"], now)
    fingerprint.check_resume(same, ["xgboost"], now, "here")  # this version's MAE search continues
    r2 = fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3)
    assert "objectives" not in r2  # an R² study stamped before the key existed stamped just this
    fingerprint.stamp(before := optuna.storages.InMemoryStorage(), ["xgboost"], r2)
    fingerprint.check_resume(before, ["xgboost"], r2, "here")
    counts = fingerprint.of_run(X, y, ["a", "b"], "t", 0, 0.2, 3, Task(counts=True))
    assert counts["objectives"] == "squared error or poisson"  # a count's R² study from before: refused alike
    with pytest.raises(UserError, match="another model objective 'squared error' \\(now 'squared error or poisson': "
                                        "this version's models train on these under --metric mae or for a count"):
        fingerprint.check_resume(before, ["xgboost"], counts, "here")
