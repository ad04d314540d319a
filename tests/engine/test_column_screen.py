"""A model trained on the columns most related to the target (trialfuse.engine.column_screen):
what a wide table's last-chance trial trains, serves and saves."""
from __future__ import annotations

import copy
import json

import lightgbm
import numpy as np
import pytest

from trialfuse.engine.column_screen import Screened, screened_columns
from trialfuse.engine.families import family_module
from trialfuse.engine.importance import permutation_importance
from trialfuse.task import Task

INFORMATIVE = (3, 17, 41)


def wide_rows(rows: int = 400, columns: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, columns))
    y = X[:, INFORMATIVE] @ np.array([2.0, -1.5, 1.0]) + 0.3 * rng.normal(size=rows)
    X[rng.random(X.shape) < 0.05] = np.nan  # blanks: filled with the column's mean for the statistic only
    return X, y


def test_the_screen_keeps_the_columns_that_go_with_the_target_in_table_order():
    X, y = wide_rows()
    assert set(INFORMATIVE) <= set(screened_columns(X, y, 10))
    kept = screened_columns(X, y, 3)
    assert kept.tolist() == sorted(INFORMATIVE)
    classes = (y > np.median(y)).astype(np.float64)  # classes: the ANOVA F
    binary = Task.from_json({"kind": "binary", "classes": [0, 1], "metric": "log_loss"})
    assert set(screened_columns(X, classes, 5, binary)) >= {3, 17}
    X[:, 5] = 1.0  # a constant column and an all-blank one score nothing, and raise nothing
    X[:, 6] = np.nan
    assert not {5, 6} & set(screened_columns(X, y, 20))


def test_the_screen_reads_a_category_column_by_its_levels_not_its_codes():
    """A category's codes are in an order that means nothing (its levels sorted as text): read as
    numbers, a column that set the target level by level had |r| near 0 and was screened out. Its
    levels' share of the target's variance, each row told by its level's other rows, is weighed
    against a number's adjusted r²: an id of a level a row or two explains nothing."""
    rng = np.random.default_rng(1)
    rows = 1_000
    X = rng.normal(size=(rows, 120))
    X[:, 7] = rng.integers(0, 12, size=rows)  # a category of 12 levels, each its own effect
    effect = np.array([2.0, -2.0, 1.5, -1.5, -2.5, 0.0, 2.5, 1.0, -1.0, -0.5, 0.5, 0.0])
    X[:, 8] = rng.permutation(rows) // 2  # an id: 500 levels, two rows each, no effect
    X[rng.random(rows) < 0.05, 7] = np.nan  # a blank is a level of its own
    y = effect[np.nan_to_num(X[:, 7], nan=11).astype(int)] + X[:, 3] + 0.3 * rng.normal(size=rows)
    assert abs(np.corrcoef(np.nan_to_num(X[:, 7]), y)[0, 1]) < 0.1  # as numbers, the codes say nothing
    assert 7 not in screened_columns(X, y, 5)
    kept = screened_columns(X, y, 5, categorical=[7, 8])
    assert 7 in kept and 3 in kept and 8 not in kept
    X[:, 9] = np.arange(rows)  # a level a row: its level means are the target itself
    assert 9 not in screened_columns(X, y, 5, categorical=[7, 8, 9])
    binary = Task.from_json({"kind": "binary", "classes": [0, 1], "metric": "log_loss"})
    assert screened_columns(X, (y > np.median(y)).astype(np.float64), 2, binary, categorical=[7, 8]).tolist() == [3, 7]
    bands = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75])).astype(np.float64)  # four classes
    four = Task.from_json({"kind": "multiclass", "classes": [0, 1, 2, 3], "metric": "log_loss"})
    assert screened_columns(X, bands, 2, four, categorical=[7, 8]).tolist() == [3, 7]
    module = family_module("lightgbm")  # the fit hands the screen its category columns
    fitted = module.fit({"screen": 5, "learning_rate": 0.2}, X[:800], y[:800], rounds=30, categorical=[7, 8])
    assert 7 in fitted.model.columns


def test_a_category_and_a_number_are_weighed_on_one_scale_for_classes():
    """The category's share is left out one row at a time (checked against the loop it stands
    for), and with five classes a number that tells them well outranks a category that tells them
    worse: a first version scored numbers at 1/(K - 1) of the categories' scale."""
    from trialfuse.engine.column_screen import _levels_explain

    rng = np.random.default_rng(3)
    classes, rows = 5, 2_000
    task = Task.from_json({"kind": "multiclass", "classes": list(range(classes)), "metric": "log_loss"})
    y = rng.integers(0, classes, rows).astype(np.float64)
    levels = np.where(rng.random(rows) < 0.55, y, rng.integers(0, classes, rows)).astype(np.int64)
    levels[:3] = [5, 6, 7]  # levels of one row each
    onehot = np.eye(classes)[y.astype(int)]
    wrong = 0.0
    for i in range(rows):  # each row told by the other rows of its level (a level of one row: by every row)
        others = (levels == levels[i]) & (np.arange(rows) != i)
        told = onehot[others].mean(axis=0) if others.any() else onehot.mean(axis=0)
        wrong += np.sum((onehot[i] - told) ** 2)
    total = np.sum((onehot - onehot.mean(axis=0)) ** 2)
    assert _levels_explain(levels, y, task) == pytest.approx(1 - wrong / total, abs=1e-12)
    X = rng.normal(size=(rows, 150))
    X[:, 0] = y + 0.35 * rng.normal(size=rows)  # a number that tells the classes apart (eta² 0.94)
    X[:, 1] = levels  # a category that is the class on 55% of rows
    assert screened_columns(X, y, 1, task, categorical=[1]).tolist() == [0]
    assert screened_columns(X, y, 2, task, categorical=[1]).tolist() == [0, 1]


def test_the_screen_passes_over_near_copies_of_a_column_it_kept():
    """150 near-copies of one strong column filled a screen of 100, and the nine other informative
    columns were left out (holdout R² 0.37)."""
    X, y = wide_rows()
    rng = np.random.default_rng(1)
    dominant = 5.0 * np.nan_to_num(X[:, 0])
    y = y + dominant
    copies = dominant[:, None] + 0.01 * rng.normal(size=(len(y), 30))
    X = np.hstack([X, copies])  # columns 60-89: copies of a column the target follows most
    kept = screened_columns(X, y, 6)
    assert len(kept) == 6 and set(INFORMATIVE) <= set(kept) and len(set(kept) & set(range(60, 90))) == 1
    only_copies = screened_columns(copies, y, 5)  # nothing else: the strongest copies, as many as asked
    assert len(only_copies) == 5 and len(set(only_copies)) == 5


def test_the_screen_reads_only_the_rows_the_model_trains_on():
    """A fold's validation rows play no part: a column that tracks the target only there is not kept."""
    X, y = wide_rows(columns=50)
    X_val, y_val = X[300:].copy(), y[300:]
    X_val[:, 9] = y_val  # the validation rows' target, copied into a column
    fitted = family_module("lightgbm").fit({"screen": 3, "learning_rate": 0.2}, X[:300], y[:300], X_val, y_val)
    assert isinstance(fitted.model, Screened) and fitted.model.columns.tolist() == sorted(INFORMATIVE)


def test_a_screened_model_predicts_saves_and_reads_back_as_its_library_model(tmp_path):
    X, y = wide_rows()
    X[:, 41] = np.round(np.abs(X[:, 41]) * 2)  # a category column's codes, among the kept ones
    y = y + 3.0 * (X[:, 41] == 1)
    module = family_module("lightgbm")
    fitted = module.fit({"screen": 5, "learning_rate": 0.2}, X[:300], y[:300], X[300:], y[300:],
                        categorical=[0, 41])
    model = fitted.model
    assert isinstance(model, Screened) and 41 in model.columns and model.width == X.shape[1]
    assert model.model.num_feature() == 5
    at = model.columns.tolist().index(41)  # the category column at its place among the kept ones
    assert f"[categorical_feature: {at}]" in model.model.model_to_string()
    predicted = module.predict(model, X[300:])
    assert predicted.shape == (100,) and np.corrcoef(predicted, y[300:])[0, 1] > 0.8
    name = module.save(model, tmp_path)  # the library's own file, and the columns it reads beside it
    assert name == "model.txt" and sorted(p.name for p in tmp_path.iterdir()) == ["model-columns.json", "model.txt"]
    back = module.load(tmp_path / name)
    assert np.array_equal(module.predict(back, X[300:]), predicted)
    # as the README says a saved model is read: its library alone, and the columns file
    columns = json.loads((tmp_path / "model-columns.json").read_text())["columns"]
    alone = lightgbm.Booster(model_file=str(tmp_path / name)).predict(X[300:][:, columns])
    assert np.array_equal(alone, predicted)
    served = tmp_path / "best_model"
    served.mkdir()
    assert module.publish(tmp_path / name, served, "fold-3") == "fold-3.txt"  # a kept fold model, as served
    assert sorted(p.name for p in served.iterdir()) == ["fold-3-columns.json", "fold-3.txt"]
    assert np.array_equal(module.predict(module.load(served / "fold-3.txt"), X[300:]), predicted)
    contributions = module.contributions(back, X[300:])  # at the table's width, 0 where it reads nothing
    assert contributions.shape == (100, X.shape[1])
    unread = np.setdiff1d(np.arange(X.shape[1]), model.columns)
    assert not contributions[:, unread].any() and contributions[:, model.columns].any()


def test_a_saved_screened_model_without_its_columns_file_is_called_damaged(tmp_path):
    """best_model/ copied without `model-columns.json` loaded the model as unscreened and ended in
    LightGBM's feature-count error; every other missing file is the user's one line."""
    from trialfuse.engine.saved_model import SavedModel
    from trialfuse.errors import UserError

    X, y = wide_rows()
    module = family_module("lightgbm")
    params = {"screen": 5, "learning_rate": 0.2}
    name = module.save(module.fit(params, X[:300], y[:300], rounds=10).model, tmp_path)
    metadata = {"family": "lightgbm", "params": params, "model_file": name,
                "feature_names": [f"x{j}" for j in range(X.shape[1])]}
    assert SavedModel(tmp_path, metadata).predict(X[300:]).shape == (100,)
    (tmp_path / "model-columns.json").unlink()
    with pytest.raises(UserError, match="lacks model-columns.json: damaged or partly copied"):
        SavedModel(tmp_path, metadata)
    narrow = {**metadata, "feature_names": metadata["feature_names"][:5]}  # no more columns than it keeps:
    assert SavedModel(tmp_path, narrow).predict(X[300:, :5]).shape == (100,)  # never screened, no file


@pytest.mark.parametrize("screen", [None, 60, 200])
def test_without_a_screen_or_with_no_more_columns_than_it_keeps_the_model_is_the_librarys(screen, tmp_path):
    X, y = wide_rows()
    params = {"learning_rate": 0.2, **({} if screen is None else {"screen": screen})}
    module = family_module("lightgbm")
    fitted = module.fit(params, X[:300], y[:300], X[300:], y[300:])
    assert not isinstance(fitted.model, Screened)
    assert module.save(fitted.model, tmp_path) == "model.txt" and [p.name for p in tmp_path.iterdir()] == ["model.txt"]
    assert not hasattr(family_module("hgb"), "contributions")  # the family's own interface, as it was
    assert copy.copy(module).module is module.module  # a wrapper copies as any object does


def test_permutation_importance_shuffles_only_the_columns_a_model_reads():
    X, y = wide_rows(rows=200, columns=50)
    X = np.nan_to_num(X)
    read = np.array(INFORMATIVE[:2])
    calls = []

    def predict(rows):
        calls.append(len(rows))
        return rows[:, read] @ np.array([2.0, -1.5])

    mean, std = permutation_importance(predict, X, y, np.random.default_rng(0), read=read)
    assert mean.shape == (50,) and (mean[read] > 0.5).all()
    assert not np.delete(mean, read).any() and not np.delete(std, read).any()
    assert calls == [200, 200 * 2 * 3]  # the base, then one call for both columns' shuffled copies


@pytest.mark.parametrize("screen", [None, 10])
@pytest.mark.parametrize("family", ["lightgbm", "xgboost", "catboost"])
def test_shuffling_a_column_no_split_reads_leaves_every_prediction_as_it_is(family, screen):
    """What lets permutation importance skip a column (SavedModel.columns_read): on 5,000 columns
    an unscreened model's explanation needed 210 s for 100 rows."""
    from trialfuse.catalog import STARTS

    X, y = wide_rows(rows=300, columns=60)
    params = {**STARTS[family][0], **({} if screen is None else {"screen": screen})}
    module = family_module(family)
    model = module.fit(params, X, y, rounds=12).model
    read = module.columns_read(model)
    assert read is not None and 0 < len(read) < X.shape[1] and set(INFORMATIVE[:2]) <= set(read.tolist())
    before = module.predict(model, X)
    shuffled = X.copy()
    rng = np.random.default_rng(0)
    unread = np.setdiff1d(np.arange(X.shape[1]), read)
    for j in unread:
        shuffled[:, j] = rng.permutation(shuffled[:, j])
    assert np.array_equal(module.predict(model, shuffled), before)
    one_read = shuffled.copy()
    one_read[:, INFORMATIVE[0]] = rng.permutation(one_read[:, INFORMATIVE[0]])
    assert not np.array_equal(module.predict(model, one_read), before)
