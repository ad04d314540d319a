"""Each family trains with early stopping, saves natively, and reads back the same model."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from trialfuse.catalog import FAMILIES
from trialfuse.engine.families import family_module
from trialfuse.survivors import make_survivors

SMALL = {
    "nn": {"hidden_layers": [32, 16], "learning_rate": 1e-2, "epochs": 60, "early_stopping_patience": 5},
    "xgboost": {"learning_rate": 0.1, "max_depth": 3},
    "lightgbm": {"learning_rate": 0.1, "num_leaves": 8},
    "catboost": {"learning_rate": 0.1, "depth": 4},
    "hgb": {"learning_rate": 0.1, "max_leaf_nodes": 8},
    "extra_trees": {"max_features": 0.5, "min_samples_leaf": 5, "max_leaf_nodes": 64},
    "random_forest": {"max_features": 0.5, "min_samples_leaf": 5, "max_leaf_nodes": 64, "max_samples": 0.5},
}


@pytest.fixture(scope="module")
def data():
    X, y, _ = make_survivors(1500, seed=1)
    X = X.astype(np.float64)
    X[::17, 5] = np.nan  # missing values must be taken by every family
    return X[:1000], y[:1000].astype(np.float64), X[1000:], y[1000:].astype(np.float64)


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_stops_early_and_learns(family, data):
    Xt, yt, Xv, yv = data
    module = family_module(family)
    fitted = module.fit(SMALL[family], Xt, yt, Xv, yv, threads=1, seed=0)
    assert 1 <= fitted.best_rounds <= fitted.rounds_run
    pred = module.predict(fitted.model, Xv)
    assert pred.shape == yv.shape and np.all(np.isfinite(pred))
    assert r2_score(yv, pred) > 0.05


@pytest.mark.parametrize("family", FAMILIES)
def test_fixed_rounds_without_validation_rows(family, data):
    Xt, yt, _, _ = data
    module = family_module(family)
    fitted = module.fit(SMALL[family], Xt, yt, threads=1, seed=0, rounds=7)
    assert fitted.rounds_run == 7


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_give_the_same_predictions(family, data, tmp_path):
    Xt, yt, Xv, yv = data
    module = family_module(family)
    fitted = module.fit(SMALL[family], Xt, yt, threads=1, seed=0, rounds=20)
    name = module.save(fitted.model, tmp_path)
    reloaded = module.load(tmp_path / name)
    np.testing.assert_allclose(module.predict(reloaded, Xv), module.predict(fitted.model, Xv), rtol=1e-6, atol=1e-6)


def test_nn_scaler_uses_the_training_rows_only(data):
    Xt, yt, Xv, yv = data
    from trialfuse.engine.families import mlp  # the network itself
    fitted = mlp.fit(SMALL["nn"], Xt, yt, Xv, yv, threads=1, seed=0)
    raw = fitted.model.x_mean.numpy()[:Xt.shape[1]]  # then any logged column's log's
    np.testing.assert_allclose(raw, np.nanmean(Xt, axis=0), rtol=1e-5)
    assert not np.allclose(raw, np.nanmean(np.vstack([Xt, Xv]), axis=0), rtol=1e-5)
    assert float(fitted.model.y_mean) == pytest.approx(float(np.mean(yt)), rel=1e-6)


def test_nn_restores_the_best_epoch(data):
    """With a patience long enough to overfit, the returned model is the best epoch's, not the last."""
    import torch

    Xt, yt, Xv, yv = data
    from trialfuse.engine.families import mlp  # the network itself
    params = {"hidden_layers": [128, 128], "learning_rate": 3e-2, "epochs": 80, "early_stopping_patience": 80}
    fitted = mlp.fit(params, Xt[:200], yt[:200], Xv, yv, threads=1, seed=0)
    assert fitted.rounds_run == 80 and fitted.best_rounds < 80
    best = r2_score(yv, mlp.predict(fitted.model, Xv))
    last = mlp.fit(params, Xt[:200], yt[:200], threads=1, seed=0, rounds=80)  # same seed, no restore
    assert best > r2_score(yv, mlp.predict(last.model, Xv))
    assert isinstance(fitted.model, torch.nn.Module)


def test_nn_blocks_follow_the_source_architecture():
    from torch import nn

    from trialfuse.engine.families import mlp  # the network itself
    net = mlp.MLP(62, [64, 32], dropout=0.2, leaky=True)
    kinds = [type(m) for m in net.layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.LeakyReLU, mlp.SeededDropout] * 2 + [nn.Linear]
    assert [type(m) for m in mlp.MLP(62, [8, 8, 8], 0.0, leaky=False).layers][2] is nn.ReLU


def test_nn_adamw_and_gradient_clip_change_training(data):
    Xt, yt, Xv, yv = data
    from trialfuse.engine.families import mlp  # the network itself
    base = {"hidden_layers": [32, 16], "learning_rate": 1e-2, "weight_decay": 0.1, "epochs": 20}
    preds = [mlp.predict(mlp.fit({**base, **extra}, Xt, yt, threads=1, seed=0, rounds=20).model, Xv)
             for extra in ({}, {"optimizer": "adamw"}, {"gradient_clip": 0.01})]
    assert not np.allclose(preds[0], preds[1]) and not np.allclose(preds[0], preds[2])


def test_lightgbm_without_a_cuda_build_trains_on_the_cpu_when_sent_to_a_gpu(data):
    from trialfuse.engine.families import lightgbm_trees

    X_train, y_train, X_val, y_val = data
    if lightgbm_trees.cuda_built():
        pytest.skip("this LightGBM build has the CUDA learner")
    fitted = lightgbm_trees.fit({"num_leaves": 8}, X_train, y_train, X_val, y_val, device="cuda:0", threads=1)
    assert fitted.best_rounds > 0  # the pip wheel: the probe says no CUDA, so the fold ran on the CPU


def test_nn_dropout_levels_are_uniform_independent_of_their_neighbours_and_drop_at_the_rate():
    import torch

    from trialfuse.engine.dropout import DROPOUT_LEVELS, DropoutStream, dropout_mask, dropout_threshold

    stream = DropoutStream(3)
    levels = stream.levels((1000, 400), torch.device("cpu"))
    assert levels.shape == (1000, 400)
    assert int(levels.min()) == 0 and int(levels.max()) == DROPOUT_LEVELS - 1
    counts = torch.bincount(levels.flatten() // (DROPOUT_LEVELS // 16), minlength=16).double()
    np.testing.assert_allclose((counts / counts.mean()).numpy(), 1.0, atol=0.03)  # 16 equal bins
    kept = dropout_mask(levels, dropout_threshold(0.3), 1.0, torch.float32)
    assert float(kept.mean()) == pytest.approx(0.7, abs=0.005)
    centred = (kept - kept.mean()) / kept.std()
    for neighbours in (centred[:, 1:] * centred[:, :-1], centred[1:] * centred[:-1],  # units, rows
                       centred[1::2, 1::2] * centred[::2, ::2]):  # diagonal
        assert abs(float(neighbours.mean())) < 0.01  # the standard error is 0.0016
    wide = DropoutStream(5).levels((20000, 64), torch.device("cpu"))  # every pair of units, many rows
    dropped = (wide < dropout_threshold(0.5)).double()
    pairs = torch.corrcoef(dropped.T)[torch.triu_indices(64, 64, 1).unbind()]
    assert float(pairs.abs().max()) < 0.04  # by chance about 0.03 at most; a pair tied by its keys: 0.17
    second = stream.levels((1000, 400), torch.device("cpu"))
    assert float((second == levels).double().mean()) < 0.001  # the next draw is a new mask
    again = DropoutStream(3).levels((1000, 400), torch.device("cpu"))
    assert torch.equal(levels, again)  # a model's seed gives its masks
    other = DropoutStream(4).levels((1000, 400), torch.device("cpu"))
    assert float((other == levels).double().mean()) < 0.001
    assert dropout_threshold(0.99999) == DROPOUT_LEVELS - 1  # one level kept: a finite rescale
    with pytest.raises(ValueError, match="dropout must be in"):
        dropout_threshold(1.0)


def test_lightgbm_splits_a_category_column_as_a_set_of_levels(tmp_path):
    """Twenty levels whose odd codes mean high: one split on the category as a set separates
    them, where a threshold on the codes cannot; the saved model keeps the column's kind."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 20, size=2000).astype(np.float64)
    codes[::50] = np.nan  # a missing level goes with the rest
    X = np.column_stack([codes, rng.normal(size=2000)])
    y = np.where(np.nan_to_num(codes, nan=0.0) % 2 == 1, 1.0, 0.0) + rng.normal(scale=0.1, size=2000)
    module = family_module("lightgbm")
    one_split = {"num_leaves": 2, "learning_rate": 1.0, "min_data_in_leaf": 5}
    native = module.fit(one_split, X, y, threads=1, rounds=1, categorical=[0]).model
    as_numbers = module.fit(one_split, X, y, threads=1, rounds=1).model
    assert r2_score(y, module.predict(native, X)) > 0.7 > 0.2 > r2_score(y, module.predict(as_numbers, X))
    again = module.load(tmp_path / module.save(native, tmp_path))
    np.testing.assert_allclose(module.predict(again, X), module.predict(native, X))


def test_the_networks_inputs_are_numbers_and_frequent_category_levels():
    """input_coding.InputCoding: a category column becomes one input per level held by MIN_LEVEL_ROWS
    training rows, its MAX_LEVELS most frequent; rare, unseen and missing levels read as zeros;
    a category column with no frequent level stays a standardized number; the torch model
    reads raw codes the same way."""
    import torch

    from trialfuse.engine.families import mlp
    from trialfuse.engine.input_coding import MAX_LEVELS, InputCoding

    rng = np.random.default_rng(0)
    n = 12 * 70
    common = np.concatenate([np.full(300, 3.0), np.full(200, 7.0), np.repeat(np.arange(10.0, 78.0), 5)])
    many = np.repeat(np.arange(70.0), 12)
    rare = np.repeat(np.arange(float(n // 2)), 2)
    X = np.column_stack([rng.normal(size=n), rng.permutation(common), rng.permutation(many), rare])
    X[::9, 1] = np.nan
    coding = InputCoding.of(X, categorical=[1, 2, 3])
    assert coding.numeric.tolist() == [0, 3]
    assert coding.level_columns.tolist() == [1, 1] + [2] * MAX_LEVELS
    assert coding.level_codes.tolist() == [3.0, 7.0] + [float(v) for v in range(MAX_LEVELS)]  # ties: lowest codes
    assert coding.width == 2 + 2 + MAX_LEVELS
    rows = np.array([[0.5, 3.0, 69.0, 1.0], [0.5, np.nan, 0.0, 1.0], [0.5, 12.0, 99.0, np.nan]])
    coded = coding.apply(rows)
    assert coded[:, 2:4].tolist() == [[1, 0], [0, 0], [0, 0]]  # level 3; missing; a rare level
    assert coded[:, 4:].sum(axis=1).tolist() == [0, 1, 0]  # 69 past the cap, 0 kept, 99 unseen
    numbers = np.nan_to_num(rows[:, [0, 3]], nan=coding.x_mean[3])
    np.testing.assert_allclose(coded[:, :2], (numbers - coding.x_mean[[0, 3]]) / coding.x_std[[0, 3]])
    assert not len(coding.missing)  # no number column misses a training value
    X[::5, 0] = np.nan
    coding = InputCoding.of(X, categorical=[1, 2, 3])
    assert coding.missing.tolist() == [0] and coding.width == 2 + 1 + 2 + MAX_LEVELS
    coded = coding.apply(rows)
    assert coded[:, 2].tolist() == [0, 0, 0] and coding.apply(X[:2])[:, 2].tolist() == [1, 0]  # X[0, 0] is missing
    model = mlp.ScaledMLP(mlp.MLP(coding.width, [8], 0.0, False), coding, 0.0, 1.0).double().eval()
    with torch.no_grad():
        direct = model.net(torch.as_tensor(coding.apply(X))).numpy()
    np.testing.assert_allclose(mlp.predict(model, X), direct, rtol=0, atol=1e-12)


def test_a_long_tailed_number_gets_its_log_as_a_second_input(tmp_path):
    """input_coding: beside a skewed column of values none negative, its log1p(x / s) (s its median
    nonzero value), imputed and standardized as the numbers are; not for a symmetric column, a 0/1
    column, a category column or one with negative values; the torch model, kept and exported,
    reads raw rows alike; and a model kept before the logs existed loads as one without them."""
    import torch

    from trialfuse.engine.families import mlp
    from trialfuse.engine.input_coding import InputCoding

    rng = np.random.default_rng(0)
    n = 600
    tail = rng.lognormal(3.0, 1.5, n)  # a count of votes, say
    X = np.column_stack([rng.normal(size=n), tail, rng.integers(0, 2, n).astype(float), tail.round(-2),
                         tail - np.median(tail)])  # the same tail, half of it below zero
    X[::7, 1] = np.nan
    coding = InputCoding.of(X, categorical=[3])
    assert coding.logged.tolist() == [1] and coding.numeric.tolist() == [0, 1, 2, 4, 5]
    scale = np.nanmedian(X[:, 1])
    assert coding.log_scale.tolist() == pytest.approx([scale])
    assert coding.width == 5 + 1 + len(coding.level_codes)  # numbers and the log, "missing" of column 1, levels
    coded = coding.apply(X)
    logs = np.nan_to_num(np.log1p(X[:, 1] / scale), nan=coding.x_mean[5])
    np.testing.assert_allclose(coded[:, 4], (logs - coding.x_mean[5]) / coding.x_std[5], atol=1e-12)
    assert np.std(coded[~np.isnan(X[:, 1]), 4]) == pytest.approx(1, abs=1e-9)
    np.testing.assert_allclose(coded[:, 3], (X[:, 4] - coding.x_mean[4]) / coding.x_std[4], atol=1e-12)

    y = np.log(tail) + 0.1 * X[:, 0]
    fitted = mlp.fit({"hidden_layers": [16], "epochs": 5}, X, y, categorical=[3], seed=0, dtype=torch.float64)
    with torch.no_grad():
        direct = fitted.model.head.in_units(fitted.model.net(torch.as_tensor(coded)), fitted.model.y_mean,
                                            fitted.model.y_std).numpy()
    np.testing.assert_allclose(mlp.predict(fitted.model, X), direct, atol=1e-12)
    kept = tmp_path / mlp.keep(fitted.model, tmp_path)
    np.testing.assert_allclose(mlp.predict(mlp.load(kept), X), direct, atol=1e-12)
    exported = mlp.load(tmp_path / mlp.publish(kept, tmp_path, "fold-0"))
    np.testing.assert_allclose(mlp.predict(exported, X), direct, atol=1e-12)

    plain = mlp.fit({"hidden_layers": [16], "epochs": 5}, X[:, [0, 2]], y, seed=0, dtype=torch.float64).model
    assert not len(plain.logged)
    saved = torch.load(str(tmp_path / mlp.keep(plain, tmp_path)), weights_only=True)
    for key in ("logged", "log_scale"):  # as a model kept before the logs was written
        del saved["state"][key]
    torch.save(saved, tmp_path / "old.kept")
    np.testing.assert_allclose(mlp.predict(mlp.load(tmp_path / "old.kept"), X[:, [0, 2]]),
                               mlp.predict(plain, X[:, [0, 2]]), atol=1e-12)


def test_the_network_learns_a_long_tailed_effect_better_with_the_log_beside_the_number(monkeypatch):
    """A target that follows the log of a long-tailed number (rating by votes): with the log as an
    input the network fits it; with the standardized number alone (the rule switched off), far less."""
    from trialfuse.engine import input_coding
    from trialfuse.engine.families import mlp

    rng = np.random.default_rng(1)
    votes = rng.lognormal(4.0, 2.0, 3000)
    X = np.column_stack([votes, rng.normal(size=3000)])
    y = np.log(votes) + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=3000)
    params = {"hidden_layers": [32, 16], "learning_rate": 3e-3, "batch_size": 256, "epochs": 60}
    scores = {}
    for name, skewed in (("with the log", input_coding.SKEWED), ("number alone", np.inf)):
        monkeypatch.setattr(input_coding, "SKEWED", skewed)
        fitted = mlp.fit(params, X[:2000], y[:2000], X[2000:], y[2000:], seed=0)
        scores[name] = r2_score(y[2000:], mlp.predict(fitted.model, X[2000:]))
    assert scores["with the log"] > 0.9 and scores["number alone"] < scores["with the log"] - 0.05, scores


def test_the_network_learns_an_effect_by_level_that_the_codes_order_hides():
    """A target set by a category's level, in no order of its codes: read as levels the network
    learns it; read as one number (no category columns) it learns far less."""
    from trialfuse.engine.families import mlp

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 12, 3000).astype(np.float64)
    effect = rng.permutation(np.linspace(-3, 3, 12))
    X = np.column_stack([codes, rng.normal(size=3000)])
    y = effect[codes.astype(int)] + 0.3 * X[:, 1] + rng.normal(scale=0.3, size=3000)
    params = {"hidden_layers": [32, 16], "learning_rate": 3e-3, "batch_size": 256, "epochs": 60}
    scores = {}
    for name, categorical in (("levels", [0]), ("codes", [])):
        fitted = mlp.fit(params, X[:2000], y[:2000], X[2000:], y[2000:], seed=0, categorical=categorical)
        scores[name] = r2_score(y[2000:], mlp.predict(fitted.model, X[2000:]))
    assert scores["levels"] > 0.95 and scores["codes"] < scores["levels"] - 0.05, scores


def test_batch_order_cuts_each_epoch_into_equal_slices_of_every_row():
    import torch

    from trialfuse.engine.families import mlp

    assert mlp.batch_order(1000, 0, 3) is None and mlp.batch_order(mlp.MIN_SLICE, 512, 3) is None
    assert [len(s) for s in mlp.batch_order(1000, 1024, 3)] == [125] * 8  # a small fold: MIN_STEPS slices at least
    assert [len(s) for s in mlp.batch_order(100, 1024, 3)] == [25] * 4  # ceil(100 / MIN_SLICE) equal slices
    slices = mlp.batch_order(6400, 700, 3)
    assert [len(s) for s in slices] == [640] * 10  # never a sliver: ceil(6400 / 700) equal slices
    assert sorted(torch.cat(slices).tolist()) == list(range(6400))
    again, other = mlp.batch_order(6400, 700, 3), mlp.batch_order(6400, 700, 4)
    assert all(torch.equal(a, b) for a, b in zip(slices, again, strict=True))
    assert not torch.equal(slices[0], other[0])


@pytest.mark.parametrize("family", ["xgboost", "lightgbm", "catboost", "extra_trees"])
def test_a_tree_fold_stops_within_rounds_once_its_stop_file_appears(family, data, tmp_path):
    """The driver cut the fold's trial (its other folds could not finish in time): the fold ends
    as at its deadline, long before its own, instead of training a model no one will use."""
    import threading
    import time

    from trialfuse.engine.families import DeadlineReached, stoppable

    Xt, yt, Xv, yv = data
    slow = {**SMALL[family], "learning_rate": 1e-3} if "learning_rate" in SMALL[family] else SMALL[family]
    stop = tmp_path / "stop" / f"{family}-0"
    stop.parent.mkdir()
    threading.Timer(0.3, stop.touch).start()
    started = time.monotonic()
    with stoppable(str(stop)), pytest.raises(DeadlineReached):
        while time.monotonic() - started < 30:  # a forest ends by itself sooner: its next fit meets the file
            family_module(family).fit(slow, Xt, yt, Xv, yv, threads=1, seed=0, deadline=time.time() + 3600)
    assert time.monotonic() - started < 5


def test_a_stop_file_stops_a_job_with_a_deadline_or_without(data, tmp_path):
    """A pruned trial in a `--trials` run has no deadline, and its fold under way is as useless."""
    from trialfuse.engine.families import past_deadline, stoppable

    stop = tmp_path / "stop"
    assert not past_deadline(None) and not past_deadline(1e18)
    with stoppable(str(stop)):
        assert not past_deadline(None)
        stop.touch()
        assert past_deadline(None) and past_deadline(1e18)
    assert not past_deadline(None) and not past_deadline(1e18)  # the job is over: its file is no longer read


def test_a_fused_task_is_told_to_stop_only_when_every_file_exists(tmp_path):
    from trialfuse.engine.families import past_deadline, stoppable

    first, second = tmp_path / "nn-0", tmp_path / "nn-1"
    first.touch()
    with stoppable(str(first), str(second)):
        assert not past_deadline(None)  # one of its trials is still wanted
        second.touch()
        assert past_deadline(None)
    with stoppable(str(first), None):  # a job with no file: never stopped by files
        assert not past_deadline(None)


@pytest.mark.parametrize("fuse", ["off", "on"])
def test_the_nn_stops_within_an_epoch_at_its_deadline(fuse):
    """An epoch of many slices is seconds on a CPU (900,000 rows in 1,024-row slices): the clock
    was read every 8 epochs alone, and a 60 s run overran by 36 s. Here an epoch is about 750
    steps, and the fold stops well inside one."""
    import time

    import torch

    from trialfuse.engine.families import DeadlineReached, mlp
    from trialfuse.engine.fused import train as fused_train

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(24_000, 8)), rng.normal(size=24_000)
    params = mlp.with_defaults({"hidden_layers": [16], "batch_size": 32, "epochs": 50})
    fold = fused_train.prepare_fold(X, y, np.arange(23_000), np.arange(23_000, 24_000))
    jobs = [fused_train.Job(params, 0, seed=0, key=k) for k in range(2)]
    one_epoch = time.perf_counter()
    mlp.fit({**params, "epochs": 1}, X[:23_000], y[:23_000], seed=0)
    one_epoch = time.perf_counter() - one_epoch
    started = time.perf_counter()
    deadline = time.time() + 0.2
    with pytest.raises(DeadlineReached):
        if fuse == "off":
            mlp.fit(params, X[:23_000], y[:23_000], X[23_000:], y[23_000:], seed=0, deadline=deadline)
        else:
            fused_train.train_fused_batch(jobs, [fold], torch.device("cpu"), torch.float32, deadline)
    assert time.perf_counter() - started < 0.2 + one_epoch / 2, one_epoch
