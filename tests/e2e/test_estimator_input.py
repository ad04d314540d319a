"""What the estimators and `trialfuse.fit` take from Python, and what they refuse before training:
NumPy numbers as parameters, a column-vector y, {label: weight} class weights; wrong types,
mixed labels, a missing y, columns of several levels (each one `UserError` line, a ValueError
as scikit-learn's own are), in the estimator's words; and scikit-learn's estimator checks
that apply (trialfuse/estimators.py lists those that do not, and why)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import estimator_checks, get_tags

import trialfuse
from trialfuse import TrialfuseClassifier, TrialfuseRegressor
from trialfuse.errors import UserError
from trialfuse.survivors import make_survivor_bands, make_survivors

ONE = dict(models=["lightgbm"], trials=1, timeout=None, ensemble=False, devices=1)  # a real run, one trial


def bands(rows: int = 120, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    X, labels, _ = make_survivor_bands(rows, seed=0, bands=classes)
    return X[:, :5], labels


@pytest.mark.parametrize("option, value, words", [
    ("class_weight", 5, "--class-weight must be one of none, balanced or a {class: weight} dict, got 5"),
    ("class_weight", {"high": -1}, "--class-weight's {class: weight} needs a positive number for each class"),
    ("trials", "2", "--trials must be a whole number (at least 1), got '2'"),
    ("trials", True, "--trials must be a whole number (at least 1), got True"),
    ("holdout", "0.2", "--holdout must be a fraction between 0 and 1, got '0.2'"),
    ("folds", 2.5, "--folds must be a whole number (at least 2), got 2.5"),
    ("seed", 1.5, "--seed must be a whole number (at least 0), got 1.5"),  # was "class ... too few for a holdout"
    ("task", "", "--task must be one of auto, regression, binary, multiclass, got ''"),
    ("devices", [1], "--devices must be auto, cpu, a worker count (N or cpu:N) or cuda:IDS, got [1]"),
    ("ensemble", "no", "--ensemble is true or false, got 'no'"),
])
def test_a_wrong_type_is_one_line_naming_the_option_before_training(tmp_path, option, value, words):
    """Each was a traceback (AttributeError 'dict' object has no attribute 'strip', TypeError '<'
    not supported, scikit-learn's ValueError), or taken: trials=True ran one trial, task="" auto."""
    X, labels = bands()
    frame = pd.DataFrame(X).add_prefix("f").assign(y=labels)
    with pytest.raises(UserError) as raised:
        trialfuse.fit(frame, "y", out=tmp_path / "api", quiet=True, **{**ONE, option: value})
    assert str(raised.value) == words or str(raised.value).startswith(words), str(raised.value)
    assert not (tmp_path / "api" / "results.json").exists()
    if option in TrialfuseClassifier().get_params():  # the estimator chooses the task itself
        with pytest.raises(UserError) as raised:
            TrialfuseClassifier(**{**ONE, option: value}, runs=tmp_path / "runs").fit(X, labels)
        assert "\n" not in str(raised.value) and str(raised.value).startswith(option), str(raised.value)
        assert not list((tmp_path / "runs").iterdir())


def test_numpy_numbers_a_column_vector_y_and_class_weights_fit_as_scikit_learn_takes_them(tmp_path):
    """np.int64 as the seed or a GridSearchCV grid's folds failed in study.set_user_attr (not JSON
    serializable) and left a run folder holding study.journal alone; a column vector y was a
    ValueError (Buffer has wrong number of dimensions); {label: weight} an AttributeError."""
    X, labels = bands(120)
    classifier = TrialfuseClassifier(**{**ONE, "trials": np.int64(1)}, seed=np.int64(3), folds=np.arange(2, 4)[0],
                                     holdout=np.float32(0.25), class_weight={"high": 5}, runs=tmp_path / "runs")
    with pytest.warns(DataConversionWarning, match="A column-vector y was passed when a 1d array was expected"):
        classifier.fit(X, labels.reshape(-1, 1))
    record = json.loads((classifier.model_.run_dir / "results.json").read_text())
    assert record["seed"] == 3 and type(record["seed"]) is int and record["folds"] == 2
    task = classifier.model_.task
    assert task.class_weight == tuple(5.0 if c == "high" else 1.0 for c in task.classes)  # a class left out weighs 1
    assert "classes weighted high: 5, low: 1" in task.described
    assert list(task.row_weights(np.array([0, 1, 1]))) == [5.0 if task.classes[0] == "high" else 1.0, *[
        5.0 if task.classes[1] == "high" else 1.0] * 2]
    assert classifier.predict(X[:3]).shape == (3,) and len(list((tmp_path / "runs").iterdir())) == 1
    with pytest.raises(UserError, match="--class-weight names 'mid', which is not a class of target column 'y'"):
        trialfuse.fit(X, y=labels, class_weight={"mid": 2}, quiet=True, out=tmp_path / "api", **ONE)


def test_labels_of_mixed_types_no_y_and_bad_tables_are_refused_before_any_run(tmp_path):
    """Mixed labels trained a whole run, then crashed in np.unique; y=None was a cryptic TypeError;
    columns of two levels trained a whole run that predict could not serve."""
    X, labels = bands(90, classes=3)
    runs = tmp_path / "runs"
    mixed = np.array([1, "dog", "emu"], dtype=object)[pd.factorize(labels)[0]]
    with pytest.raises(UserError, match="Mix of label input types \\(string and number\\) in y, e.g. 1 and 'dog'"):
        TrialfuseClassifier(**ONE, runs=runs).fit(X, mixed)
    for gap in (None, np.nan, pd.NA):  # text labels with a gap: TypeError '<' between 'NoneType' and 'str'
        holed = pd.Series(labels, dtype=object).where(np.arange(90) != 3, gap)
        for kind in (object, "string", "category"):
            with pytest.raises(UserError, match=r"^y has 1 missing or infinite value\(s\) \(first at row 3\)$"):
                TrialfuseClassifier(**ONE, runs=runs).fit(X, holed.astype(kind))
    with pytest.raises(ValueError, match="TrialfuseRegressor requires y to be passed, but the target y is None"):
        TrialfuseRegressor(**ONE, runs=runs).fit(X, None)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        TrialfuseClassifier(**ONE, runs=runs).fit(X, X[:, 0])
    with pytest.raises(UserError, match="y should be a 1d array, got an array of shape \\(90, 2\\)"):
        TrialfuseRegressor(**ONE, runs=runs).fit(X, X[:, :2])
    two_levels = pd.DataFrame(X[:, :2], columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")]))
    with pytest.raises(UserError, match="X has columns of 2 levels, e.g. \\('a', 'b'\\): give each column one name"):
        TrialfuseRegressor(**ONE, runs=runs).fit(two_levels, X[:, 3])
    two_levels[("y", "")] = X[:, 3]
    with pytest.raises(UserError, match="the DataFrame has columns of 2 levels"):
        trialfuse.fit(two_levels, ("y", ""), out=tmp_path / "api", quiet=True)
    assert not runs.exists()


@pytest.mark.filterwarnings("ignore:The number of unique classes is greater than 50%")
def test_a_refusal_names_y_and_the_estimator_not_a_column_and_a_flag(tmp_path):
    """`target column 'target' has 75 missing ...` and `use --task regression`: words of the CLI
    where the user gave y and chose an estimator."""
    X, y, _ = make_survivors(120, seed=0)
    y[::4] = np.nan
    with pytest.raises(UserError) as raised:
        TrialfuseRegressor(**ONE, runs=tmp_path / "runs").fit(X[:, :4], y)
    assert str(raised.value) == "y has 30 missing or infinite value(s) (first at row 0)"
    with pytest.raises(UserError, match="^y has 120 classes, more than 100: if they are numbers, use TrialfuseRegress"):
        TrialfuseClassifier(**ONE, runs=tmp_path / "runs").fit(X[:, :4], np.arange(120))
    with pytest.raises(UserError, match="too few rows \\(12\\) for a 0.2 holdout plus 5 folds: need at least 13 "
                                        "\\(or folds=4\\)"):
        TrialfuseRegressor(**ONE, folds=5, runs=tmp_path / "runs").fit(X[:12, :4], np.arange(12.0))
    assert not list((tmp_path / "runs").iterdir())


def test_a_fit_that_fails_before_training_leaves_no_run_folder(tmp_path, monkeypatch):
    """A fit that failed after the run had opened its journal (np.int64 in the fingerprint) left a
    run folder holding study.journal alone, under `runs`, for every failed fit of a grid."""
    def fails(*args, **kwargs):
        raise TypeError("Object of type int64 is not JSON serializable")

    monkeypatch.setattr("trialfuse.driver.fingerprint.stamp", fails)
    X, labels = bands()
    with pytest.raises(TypeError, match="JSON serializable"):
        TrialfuseClassifier(**ONE, runs=tmp_path / "runs").fit(X, labels)
    assert not list((tmp_path / "runs").iterdir())


def test_the_tags_say_what_fit_takes():
    """NaN in X is a missing value and a sparse X is made dense: the tags said neither."""
    for estimator in (TrialfuseRegressor(), TrialfuseClassifier(timeout=None, trials=1)):
        tags = get_tags(estimator)
        assert tags.input_tags.allow_nan and tags.input_tags.sparse
        assert tags.non_deterministic == (estimator.timeout is not None)  # a time budget: the machine's speed decides


@pytest.mark.parametrize("check", ["check_estimators_empty_data_messages", "check_supervised_y_no_nan",
                                   "check_complex_data", "check_fit1d", "check_requires_y_none",
                                   "check_supervised_y_2d", "check_class_weight_classifiers",
                                   "check_classifiers_regression_target"])
@pytest.mark.parametrize("kind", [TrialfuseRegressor, TrialfuseClassifier])
def test_scikit_learns_estimator_checks_on_input_pass(check, kind, tmp_path):
    """The checks of what fit takes and refuses; those that fit a whole run (y_2d, class_weight)
    fit one trial of LightGBM on their own small arrays, a few seconds each."""
    if "classifiers" in check and kind is TrialfuseRegressor:
        pytest.skip("a classifier's check")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", trialfuse.DataWarning)
        getattr(estimator_checks, check)(kind.__name__, kind(**ONE, runs=tmp_path / "runs"))
