"""Under --metric mae every boosting family and the NN train on absolute error, and the fused NN
still equals one model at a time. Before, they trained on squared error whatever the metric: a
new user's MAE run on 2,000 rows near 0 with 5 values of 1e6 was off by 2,455 on ordinary rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from trialfuse.catalog import STARTS
from trialfuse.engine.families import family_module, mlp
from trialfuse.engine.fused.train import train_many
from trialfuse.survivors import make_survivors
from trialfuse.task import Objective, Task

MAE = Task(metric_name="mae")
FAR = 1e6  # a few training targets this far out (entry errors)


def far_table(rows: int = 1200, seed: int = 0):
    """y = x0 + noise, with 1% of the training rows' targets set to FAR; the validation rows are clean."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 4))
    y = X[:, 0] + rng.normal(scale=0.1, size=rows)
    train, val = np.arange(rows)[: rows * 3 // 4], np.arange(rows)[rows * 3 // 4:]
    y_train = y[train].copy()
    y_train[rng.choice(len(train), len(train) // 100, replace=False)] = FAR
    return X[train], y_train, X[val], y[val]


@pytest.mark.parametrize("family", ["xgboost", "lightgbm", "catboost", "hgb", "nn"])
def test_a_family_under_mae_is_not_pulled_by_a_few_far_targets(family):
    """Each ordinary row is predicted to within a fraction of its spread (it was off by thousands,
    as the squared-error fit is here: the guard that the table can tell the two apart)."""
    X_train, y_train, X_val, y_val = far_table()
    module = mlp if family == "nn" else family_module(family)
    params = {"hidden_layers": [32, 16], "epochs": 150} if family == "nn" else {**STARTS[family][0]}
    errors = {}
    for name, task in (("mae", MAE), ("squared", Task())):
        fitted = module.fit(params, X_train, y_train, X_val, y_val, threads=1, seed=0, task=task)
        errors[name] = float(np.median(np.abs(module.predict(fitted.model, X_val) - y_val)))
    assert errors["mae"] < 0.35, errors  # y's spread is 1
    assert errors["squared"] > 3 * errors["mae"], errors


def test_the_fused_nn_equals_one_at_a_time_under_absolute_error_in_float64():
    X, y, _ = make_survivors(601, seed=0)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    configs = [{"hidden_layers": [32, 16], "learning_rate": 1e-2, "epochs": 30, "early_stopping_patience": 5,
                "dropout": 0.0},
               {"hidden_layers": [16, 8], "learning_rate": 3e-3, "epochs": 30, "optimizer": "adamw", "dropout": 0.0}]
    fused = train_many(configs, X, y, folds, fuse="on", dtype=torch.float64, task=MAE)
    serial = train_many(configs, X, y, folds, fuse="off", dtype=torch.float64, task=MAE)
    squared = train_many(configs, X, y, folds, fuse="off", dtype=torch.float64)
    for f, s, q in zip(fused, serial, squared, strict=True):
        assert f.rounds_run == s.rounds_run and f.best_rounds == s.best_rounds
        np.testing.assert_allclose(f.predictions_val, s.predictions_val, rtol=0, atol=1e-6)
        assert f.val_loss == pytest.approx(np.mean(np.abs(s.predictions_val - y[folds[s.fold][1]])), abs=1e-6)
        assert not np.allclose(s.predictions_val, q.predictions_val)  # it trained on another loss


def test_the_task_reads_absolute_error_everywhere_under_mae():
    y = np.array([0.0, 0.0, 0.0, 10.0])
    near, between = np.zeros(4), np.full(4, 2.5)  # the median's prediction, and the mean's
    assert MAE.objective == Objective.ABSOLUTE_ERROR and MAE.loss_name == "absolute error"
    assert Task().objective == Objective.SQUARED_ERROR and Task().loss_name == "squared error"
    assert MAE.loss(y, near) == 2.5 and MAE.loss(y, between) == 3.75
    assert Task().loss(y, between) < Task().loss(y, near)
    assert list(MAE.greedy_losses(y, np.stack([near, between]))) == [2.5, 3.75]  # the ensemble picks the median's
    assert MAE.prior_name == "median" and list(MAE.prior(y, 2)) == [0.0, 0.0]


def test_under_mae_the_boosting_families_search_the_objective_and_their_starts_take_each_in_turn():
    """Absolute error alone lost 0.5-1% of the holdout MAE on two of three tables (squared error
    learns from fewer rows where the noise is symmetric): the search chooses, and a short budget's
    first two starts train one of each, squared error first."""
    import optuna

    from trialfuse.catalog import FAMILIES, OBJECTIVE, params_from_trial, suggest

    assert MAE.objectives == ("squared error", "absolute error") and Task().objectives == ()
    starts = MAE.starts(FAMILIES["lightgbm"])
    assert [s[OBJECTIVE] for s in starts] == ["squared error", "absolute error"] * 2 + ["squared error"]
    assert {k: v for k, v in starts[1].items() if k != OBJECTIVE} == FAMILIES["lightgbm"].start[1]
    for family in ("nn", "random_forest", "extra_trees"):  # one objective each: nothing to choose
        assert MAE.starts(FAMILIES[family]) == FAMILIES[family].start
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {suggest("xgboost", study.ask(), MAE.objectives)[OBJECTIVE] for _ in range(12)}
    assert drawn == {"absolute error", "squared error"}
    assert OBJECTIVE not in suggest("xgboost", study.ask(), Task().objectives)
    assert OBJECTIVE not in suggest("nn", study.ask(), MAE.objectives)
    trial = study.ask()
    params = suggest("catboost", trial, MAE.objectives)
    study.tell(trial, 0.0)
    assert params_from_trial("catboost", study.trials[-1]) == params  # a saved trial rebuilds its objective


@pytest.mark.parametrize("objective", ["squared error", "absolute error"])
def test_a_model_trains_on_the_objective_its_params_chose(objective):
    """The engine reads the key into the task (no library sees it): the model equals one fit
    with that objective by the task alone."""
    from trialfuse.catalog import OBJECTIVE

    X_train, y_train, X_val, y_val = far_table()
    module = family_module("lightgbm")
    chosen = module.fit({**STARTS["lightgbm"][0], OBJECTIVE: objective}, X_train, y_train, X_val, y_val,
                        threads=1, seed=0, task=MAE)
    alone = module.fit(STARTS["lightgbm"][0], X_train, y_train, X_val, y_val, threads=1, seed=0,
                       task=MAE if objective == "absolute error" else Task())
    np.testing.assert_array_equal(module.predict(chosen.model, X_val), module.predict(alone.model, X_val))
    assert MAE.trained_by({OBJECTIVE: objective}).objective == objective
    assert MAE.trained_by({OBJECTIVE: objective}).metric_name == "mae"  # scored as before


def test_a_kept_nn_of_absolute_error_reloads_as_one(tmp_path):
    """Its loss travels with it (the prediction needs only the median and MAD it was scaled by)."""
    X_train, y_train, X_val, y_val = far_table(200)
    fitted = mlp.fit({"hidden_layers": [8], "epochs": 3}, X_train, y_train, X_val, y_val, threads=1, seed=0, task=MAE)
    assert fitted.model.head.absolute
    again = mlp._from_kept(tmp_path / mlp.keep(fitted.model, tmp_path))
    assert again.head == fitted.model.head
    np.testing.assert_allclose(mlp.predict(again, X_val), mlp.predict(fitted.model, X_val), rtol=0, atol=1e-9)
