"""The fused trainer equals one-model-at-a-time training, model by model."""
from __future__ import annotations

import logging
import re
import weakref
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import KFold

from trialfuse.engine.families import FoldFailed, mlp
from trialfuse.engine.fused import adam as fused_adam
from trialfuse.engine.fused import batching, memory
from trialfuse.engine.fused import train as fused_train
from trialfuse.engine.fused.batching import Batching
from trialfuse.engine.fused.mlp import stack_modules, stack_widths
from trialfuse.engine.fused.train import train_many
from trialfuse.fuse import Fuse
from trialfuse.survivors import make_survivors, score_bands
from trialfuse.task import Kind, Task
from trialfuse.testing import faults

BASE = {"epochs": 40, "early_stopping_patience": 10, "dropout": 0.0}
# one depth, everything else mixed: widths, activation, optimizer, lr, decay, clip, patience, min_delta, budget
MIXED = [
    {**BASE, "hidden_layers": [32, 16], "learning_rate": 1e-2},
    {**BASE, "hidden_layers": [64, 8], "learning_rate": 3e-3, "optimizer": "adamw", "weight_decay": 1e-2,
     "use_leaky_relu": True},
    {**BASE, "hidden_layers": [16, 32], "learning_rate": 2e-2, "gradient_clip": 0.5, "early_stopping_patience": 3,
     "min_delta": 1e-3},
    {**BASE, "hidden_layers": [48, 48], "learning_rate": 5e-3, "weight_decay": 1e-3, "epochs": 25,
     "early_stopping_patience": 30, "gradient_clip": 2.0},
]


@pytest.fixture(scope="module")
def table():
    X, y, _ = make_survivors(901, seed=0)
    return X, y, list(KFold(3, shuffle=True, random_state=0).split(X))  # training rows: 600, 601, 601


def test_fused_equals_serial_in_float64(table):
    X, y, folds = table
    fused = train_many(MIXED, X, y, folds, fuse="on", dtype=torch.float64)
    serial = train_many(MIXED, X, y, folds, fuse="off", dtype=torch.float64)
    assert len(fused) == len(MIXED) * len(folds)
    assert [r.batch_mode for r in fused] == ["fused"] * 12 and [r.batch_mode for r in serial] == ["serial"] * 12
    assert [r.fold for r in fused] == [0, 1, 2] * 4  # config-major order
    runs = [r.rounds_run for r in fused]
    assert len(set(runs)) > 3 and max(runs) > 2 * min(runs)  # models stopped at different epochs (compaction ran)
    for f, s in zip(fused, serial, strict=True):
        assert f.rounds_run == s.rounds_run and f.best_rounds == s.best_rounds
        np.testing.assert_allclose(f.predictions_val, s.predictions_val, rtol=0, atol=1e-6)
        assert f.r2 == pytest.approx(s.r2, abs=1e-6)
        assert f.train_loss == pytest.approx(s.train_loss, abs=1e-6)


def test_fused_matches_serial_in_float32():
    """float32: batched and single matmuls round differently, and full-batch Adam amplifies it
    (measured on one model: 3e-6 apart after 2 epochs, 3e-4 after 4, 2e-2 after 8), so raw
    predictions drift apart and a stopping decision on a near-tie can move. Scores agree to
    1e-3 on gentle configs. Dropping the hidden biases (BatchNorm removes them) did not
    narrow it (8.0e-4 with them, 9.0e-4 without, on this batch), so they stay."""
    X, y, _ = make_survivors(6000, seed=0)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    gentle = [{**c, "learning_rate": min(c["learning_rate"], 2e-3), "min_delta": 1e-3} for c in MIXED]
    fused = train_many(gentle, X, y, folds, fuse="on")
    serial = train_many(gentle, X, y, folds, fuse="off")
    same_epochs = sum(f.rounds_run == s.rounds_run for f, s in zip(fused, serial, strict=True))
    assert same_epochs >= 10  # of 12
    for f, s in zip(fused, serial, strict=True):
        assert abs(f.rounds_run - s.rounds_run) <= 3
        assert f.r2 == pytest.approx(s.r2, abs=2e-3)


def test_fused_equals_serial_with_dropout_in_float64(table):
    """Each model draws its dropout masks from its own stream, so one-at-a-time training
    draws the same masks as the fused batch."""
    X, y, folds = table
    dropping = [{**c, "dropout": rate} for c, rate in zip(MIXED, (0.1, 0.3, 0.2, 0.45), strict=True)]
    fused = train_many(dropping, X, y, folds, fuse="on", dtype=torch.float64)
    serial = train_many(dropping, X, y, folds, fuse="off", dtype=torch.float64)
    for f, s in zip(fused, serial, strict=True):
        assert (f.rounds_run, f.best_rounds) == (s.rounds_run, s.best_rounds)
        assert abs(f.r2 - s.r2) <= 1e-9


def test_a_dropout_model_trains_the_same_alone_and_anywhere_in_a_batch(table):
    X, y, folds = table
    fold_data = [fused_train.prepare_fold(X, y, t, v) for t, v in folds]
    model = fused_train.Job({**BASE, "hidden_layers": [32, 16], "dropout": 0.3, "learning_rate": 1e-2}, 0, seed=7)
    others = [fused_train.Job({**c, "dropout": 0.2}, 0, seed=100 + k) for k, c in enumerate(MIXED * 2)]

    def run(jobs, fuse):
        jobs = [fused_train.Job(mlp.with_defaults(j.params), j.fold, j.seed, key=i) for i, j in enumerate(jobs)]
        return fused_train.run_jobs(jobs, fold_data, fuse=Fuse(fuse), dtype=torch.float64)

    alone = run([model], "on")[0]
    first = run([model, *others[:5]], "on")[0]
    sixth = run([*others[:5], model, *others[5:]], "on")[5]
    serial = run([model], "off")[0]
    assert first.fused_batch_size == 6 and sixth.fused_batch_size == 9
    for other in (first, sixth, serial):
        assert (other.rounds_run, other.best_rounds) == (alone.rounds_run, alone.best_rounds)
        assert abs(other.r2 - alone.r2) <= 1e-8  # rounding of batched matmuls; another mask moves R² ~1e-2
        np.testing.assert_allclose(other.predictions_val, alone.predictions_val, rtol=0, atol=1e-6)


def test_mixed_depths_are_split_and_keep_order(table):
    X, y, folds = table
    configs = [{**BASE, "hidden_layers": [16, 8], "epochs": 5}, {**BASE, "hidden_layers": [16, 8, 8], "epochs": 5},
               {**BASE, "hidden_layers": [8, 8], "epochs": 5}]
    fused = train_many(configs, X, y, folds[:1], fuse="on", dtype=torch.float64)
    serial = train_many(configs, X, y, folds[:1], fuse="off", dtype=torch.float64)
    assert [r.fused_batch_size for r in fused] == [2, 1, 2]
    for f, s in zip(fused, serial, strict=True):
        assert f.r2 == pytest.approx(s.r2, abs=1e-6)


PADDED = Batching(pad_depths=True)
# depths 1 to 3, widths that grow and shrink past a shallower model's last width, dropout on
DEPTHS = [
    {**BASE, "hidden_layers": [16, 48, 8], "learning_rate": 1e-2, "dropout": 0.2},
    {**BASE, "hidden_layers": [32], "learning_rate": 5e-3, "optimizer": "adamw", "weight_decay": 1e-2,
     "use_leaky_relu": True, "dropout": 0.3},
    {**BASE, "hidden_layers": [64, 24], "learning_rate": 2e-2, "gradient_clip": 0.5, "early_stopping_patience": 4,
     "weight_decay": 1e-3},  # Adam with L2 in the gradient
    {**BASE, "hidden_layers": [8, 8, 8], "learning_rate": 1e-2, "epochs": 25, "dropout": 0.1},
]


def test_padded_depths_share_one_batch_and_train_as_each_model_alone(table):
    """With `pad_depths`, a model shallower than its batch carries its output through the
    layers it lacks unchanged (and draws no dropout masks there), so it trains as it does alone."""
    X, y, folds = table
    padded = train_many(DEPTHS, X, y, folds, fuse="on", batching=PADDED, dtype=torch.float64)
    serial = train_many(DEPTHS, X, y, folds, fuse="off", dtype=torch.float64)
    split = train_many(DEPTHS, X, y, folds, fuse="on", dtype=torch.float64)
    assert {r.fused_batch_size for r in padded} == {8, 4}  # folds of 600 and 601 rows: two batches
    assert {r.fused_batch_size for r in split} == {1, 2, 4}  # by depth too: six batches
    runs = [r.rounds_run for r in padded]
    assert max(runs) > 2 * min(runs)  # models left the batch at different epochs (compaction ran)
    for p, s in zip(padded, serial, strict=True):
        assert (p.rounds_run, p.best_rounds) == (s.rounds_run, s.best_rounds)
        assert abs(p.r2 - s.r2) <= 1e-9
        np.testing.assert_allclose(p.predictions_val, s.predictions_val, rtol=0, atol=1e-8)


def test_a_kept_model_from_a_padded_batch_is_its_own_depth_and_predicts_what_it_scored(table):
    X, y, folds = table
    fold_data = [fused_train.prepare_fold(X, y, *folds[0])]
    jobs = [fused_train.Job(mlp.with_defaults(c), 0, 3 + k, key=k, keep=True) for k, c in enumerate(DEPTHS)]
    results = fused_train.run_jobs(jobs, fold_data, fuse=Fuse("on"), dtype=torch.float64, batching=PADDED)
    assert {r.fused_batch_size for r in results} == {4}
    for job, result in zip(jobs, results, strict=True):
        linears = [m for m in result.model.net.layers if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in linears] == [*job.params["hidden_layers"], 1]
        np.testing.assert_allclose(mlp.predict(result.model, fold_data[0].raw[2]), result.predictions_val,
                                   atol=1e-6)


def test_a_padded_stack_holds_no_weights_in_the_layers_a_model_lacks():
    nets = [mlp.new_net(5, mlp.with_defaults(c), seed=k) for k, c in enumerate(DEPTHS)]
    stack = stack_modules(nets, [0.0] * 4, [0.0] * 4, torch.float64, torch.device("cpu"))
    # layer 3: its deepest models hold 8 units, but models 1 and 2 carry 32 and 24 through it
    assert [w.shape[1:] for w in stack.weights] == [(5, 64), (64, 48), (48, 32), (32, 1)]
    assert stack.skips[0] is None
    assert stack.skips[1].flatten().tolist() == [False, True, False, False]
    assert stack.skips[2].flatten().tolist() == [False, True, True, False]
    masks = stack.param_masks()
    for layer in (1, 2):  # model 1 (one hidden layer of 32) has no weights, bias or BatchNorm there
        for tensor in (stack.weights[layer], masks[layer], stack.gammas[layer], masks[2 * 4 + layer]):
            assert not tensor[1].any()
    assert stack.weights[3][1, :32].any() and not stack.weights[3][1, 32:].any()  # its head reads its 32 units
    assert [int(stack.unit_masks[2][m].sum()) for m in range(4)] == [8, 32, 24, 8]


def test_a_model_without_hidden_layers_is_never_padded(table):
    with pytest.raises(ValueError, match="no hidden layer"):
        stack_widths([[], [8, 8]])
    X, y, folds = table
    plain = {**BASE, "hidden_layers": [], "epochs": 5}
    padded = train_many([plain, DEPTHS[0]], X, y, folds[:1], fuse="on", batching=PADDED, dtype=torch.float64)
    serial = train_many([plain, DEPTHS[0]], X, y, folds[:1], fuse="off", dtype=torch.float64)
    assert [r.fused_batch_size for r in padded] == [1, 1]  # a batch of its own
    assert padded[0].r2 == pytest.approx(serial[0].r2, abs=1e-9)


def test_dropout_masks_follow_the_model_seed_and_ignore_neighbours(table):
    X, y, folds = table
    drop = {**BASE, "hidden_layers": [32, 32], "dropout": 0.3, "epochs": 10, "early_stopping_patience": 100}
    fold_data = [fused_train.prepare_fold(X, y, *folds[0])]
    jobs = [fused_train.Job(mlp.with_defaults(drop), 0, seed, key=i) for i, seed in enumerate((5, 5, 6))]
    twins = fused_train.run_jobs(jobs, fold_data, fuse=Fuse("on"), dtype=torch.float64)
    assert twins[0].fused_batch_size == 3
    np.testing.assert_array_equal(twins[0].predictions_val, twins[1].predictions_val)  # one seed, one stream
    assert twins[0].r2 != twins[2].r2  # another seed: other weights and other masks
    a = train_many([drop, {**drop, "dropout": 0.1}], X, y, folds[:1], fuse="on", seed=5, dtype=torch.float64)
    b = train_many([drop, {**drop, "dropout": 0.45}], X, y, folds[:1], fuse="on", seed=5, dtype=torch.float64)
    assert a[0].r2 == b[0].r2  # model 0's masks do not depend on its neighbour's rate
    np.testing.assert_array_equal(a[0].predictions_val, b[0].predictions_val)
    assert a[1].r2 != b[1].r2


def test_injected_oom_halves_the_batch_down_to_what_fits(table, monkeypatch, caplog):
    X, y, folds = table
    monkeypatch.setenv(faults.FAULT_ENV, "oom:2")
    configs = [{**c, "epochs": 8} for c in MIXED] * 2
    with caplog.at_level(logging.WARNING, logger="trialfuse.engine.fused.train"):
        fused = train_many(configs, X, y, folds[:1], fuse="8", dtype=torch.float64)
    halved = [int(r.getMessage().split()[4]) for r in caplog.records if "out of memory" in r.getMessage()]
    assert halved == [8, 4, 4]  # 8 -> 4 + 4, each 4 -> 2 + 2
    assert len(fused) == 8 and all(r.fused_batch_size == 2 for r in fused)
    monkeypatch.delenv(faults.FAULT_ENV)
    serial = train_many(configs, X, y, folds[:1], fuse="off", dtype=torch.float64)
    for f, s in zip(fused, serial, strict=True):
        assert f.r2 == pytest.approx(s.r2, abs=1e-6)


def test_a_model_out_of_memory_alone_fails_alone_and_the_task_keeps_its_other_results(table, monkeypatch):
    X, y, folds = table
    original = fused_train.train_fused_batch

    def deep_models_never_fit(batch, *args):
        if any(len(job.params["hidden_layers"]) == 3 for job in batch):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(batch, *args)

    monkeypatch.setattr(fused_train, "train_fused_batch", deep_models_never_fit)
    deep = {**BASE, "hidden_layers": [16, 16, 16]}
    results = train_many([*MIXED[:2], deep, deep], X, y, folds[:1], fuse="on")
    assert [isinstance(r, FoldFailed) for r in results] == [False, False, True, True]
    assert all(np.isfinite(r.r2) for r in results[:2])
    assert "out of memory with one model alone" in results[2].error


def test_memory_is_released_only_once_the_failed_batch_is_unreachable(table, monkeypatch):
    X, y, folds = table
    original = fused_train.train_fused_batch
    held: list[weakref.ref] = []
    alive_at_release: list[bool] = []

    def first_batch_runs_out(batch, *args):
        if not held:
            stacked = torch.zeros(len(batch), 1000)  # stands for the batch's parameters and activations
            held.append(weakref.ref(stacked))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return original(batch, *args)

    monkeypatch.setattr(fused_train, "train_fused_batch", first_batch_runs_out)
    monkeypatch.setattr(fused_train, "release_memory", lambda dev: alive_at_release.append(held[0]() is not None))
    results = train_many(MIXED[:2], X, y, folds[:1], fuse="on")
    assert alive_at_release == [False]  # the traceback no longer held it when the cache was emptied
    assert all(r.fused_batch_size == 1 and np.isfinite(r.r2) for r in results)


def test_cublas_allocation_failures_are_out_of_memory_too():
    assert memory.is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"))
    assert not memory.is_oom(RuntimeError("CUDA error: an illegal memory access was encountered"))


def test_auto_trains_one_at_a_time_on_a_cpu_and_gives_the_serial_results(table):
    X, y, folds = table
    results = train_many(MIXED, X, y, folds, fuse="auto")
    serial = train_many(MIXED, X, y, folds, fuse="off")
    assert len(results) == 12 and {r.batch_mode for r in results} == {"serial"}
    assert [r.r2 for r in results] == [r.r2 for r in serial]  # deterministic: the same numbers
    assert all(np.isfinite(r.r2) and r.device == "cpu" and r.duration > 0 for r in results)


@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_equals_torch_adam_per_model(decoupled):
    torch.manual_seed(0)
    lrs, decays = [1e-2, 3e-3, 1e-1], [0.0, 1e-2, 0.3]
    start = torch.randn(3, 4, 5, dtype=torch.float64)
    grads_per_step = [torch.randn(3, 4, 5, dtype=torch.float64) for _ in range(6)]
    stacked = start.clone()
    hyper = fused_adam.AdamHyper(torch.tensor(lrs, dtype=torch.float64), torch.tensor(decays, dtype=torch.float64),
                                 torch.tensor([decoupled] * 3))
    state = fused_adam.init([stacked])
    for g in grads_per_step:
        state = fused_adam.update([stacked], [g], state, hyper, torch.ones(3, dtype=torch.bool))
    for m in range(3):
        p = torch.nn.Parameter(start[m].clone())
        kind = torch.optim.AdamW if decoupled else torch.optim.Adam
        opt = kind([p], lr=lrs[m], weight_decay=decays[m], foreach=False)
        for g in grads_per_step:
            p.grad = g[m].clone()
            opt.step()
        torch.testing.assert_close(stacked[m], p.detach(), rtol=1e-12, atol=1e-12)


def test_inactive_models_do_not_move():
    p = torch.ones(2, 3, dtype=torch.float64)
    hyper = fused_adam.AdamHyper(torch.tensor([0.1, 0.1], dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                                 torch.tensor([False, False]))
    state = fused_adam.update([p], [torch.ones(2, 3, dtype=torch.float64)], fused_adam.init([p]), hyper,
                              torch.tensor([True, False]))
    assert torch.all(p[0] < 1) and torch.all(p[1] == 1) and state.step.tolist() == [1.0, 0.0]


def test_compiled_hidden_layers_train_as_eager_ones_and_compile_only_once(table, monkeypatch):
    """torch.compile'd BatchNorm/activation/dropout gives every model the eager result (float64),
    and after its one warm-up no batch makes it compile again: not a batch compacted (it keeps
    at least two models), nor one whose models all have no dropout, nor evaluation."""
    import torch._dynamo as dynamo

    from trialfuse.engine.fused.mlp import compiled_block

    X, y, folds = table
    configs = [{**c, "dropout": 0.3 if i < 2 else 0.0} for i, c in enumerate(MIXED)]
    eager = train_many(configs, X, y, folds, fuse="on", dtype=torch.float64, compiled=False)
    compiled_block(torch.device("cpu"), torch.float64)
    monkeypatch.setattr(dynamo.config, "error_on_recompile", True)
    compiled = train_many(configs, X, y, folds, fuse="on", dtype=torch.float64, compiled=True)
    assert min(r.rounds_run for r in eager) * 2 < max(r.rounds_run for r in eager)  # compaction ran
    for c, e in zip(compiled, eager, strict=True):
        assert c.rounds_run == e.rounds_run and c.best_rounds == e.best_rounds
        assert c.r2 == pytest.approx(e.r2, abs=1e-9)


def test_batches_hold_a_configs_folds_together_and_close_once_full():
    jobs = [fused_train.Job({"hidden_layers": widths}, fold, seed=0, key=i * 3 + fold)
            for i, widths in enumerate([[32, 32], [256, 64], [32, 32], [256, 128]]) for fold in range(3)]
    whole = batching.plan_batches(jobs, n_train=1000, cap=100)
    assert [[j.params["hidden_layers"] for j in b] for b in whole] == [
        [[256, 128]] * 3 + [[256, 64]] * 3 + [[32, 32]] * 6]  # widest first, equal widths side by side
    filled = batching.plan_batches(jobs, n_train=1000, cap=100, batching=Batching(fill=3000))  # 3 models' rows
    assert [[j.params["hidden_layers"] for j in b] for b in filled] == [[[256, 128]] * 3, [[256, 64]] * 3,
                                                                          [[32, 32]] * 3, [[32, 32]] * 3]
    assert [len(b) for b in batching.plan_batches(jobs, n_train=1000, cap=4)] == [4, 4, 4]
    # a padding limit closes a batch before the narrow models: 7 in one would hold 1.24x their own units
    snug = batching.plan_batches(jobs, n_train=1000, cap=100, batching=Batching(max_padding=1.2))
    assert [[j.params["hidden_layers"] for j in b] for b in snug] == [[[256, 128]] * 3 + [[256, 64]] * 3,
                                                                        [[32, 32]] * 6]
    assert batching.padding(snug[0]) == pytest.approx(6 * 384 / (3 * 384 + 3 * 320))
    assert batching.padding(jobs[:1] + jobs[3:4]) == pytest.approx(2 * 320 / (64 + 320))  # [32, 32] in [256, 64]


@pytest.mark.parametrize("fuse", ["on", "off"])
def test_a_kept_fold_model_predicts_what_the_fold_scored_and_survives_keep_and_publish(table, fuse, tmp_path):
    """The model a fold keeps (unstacked from a fused batch, or as trained alone), written
    cheaply and exported only when served, is the model whose validation predictions scored."""
    X, y, folds = table
    drop = [{**c, "dropout": 0.2} for c in MIXED[:3]]  # dropout on: a kept model evaluates without it
    fold_data = [fused_train.prepare_fold(X, y, *f) for f in folds[:2]]
    jobs = [fused_train.Job(mlp.with_defaults(c), k % 2, 7 + k, key=k, keep=True) for k, c in enumerate(drop)]
    results = fused_train.run_jobs(jobs, fold_data, fuse=Fuse(fuse), dtype=torch.float64)
    for job, result in zip(jobs, results, strict=True):
        X_val = fold_data[job.fold].raw[2]
        np.testing.assert_allclose(mlp.predict(result.model, X_val), result.predictions_val, atol=1e-6)
        directory = tmp_path / f"{fuse}-{job.key}"
        directory.mkdir()
        kept = directory / mlp.keep(result.model, directory)
        assert kept.suffix == mlp.KEPT_SUFFIX
        np.testing.assert_allclose(mlp.predict(mlp.load(kept), X_val), result.predictions_val, atol=1e-6)
        served = mlp.publish(kept, directory, "fold-0")
        assert served == "fold-0.pt2"
        np.testing.assert_allclose(mlp.predict(mlp.load(directory / served), X_val), result.predictions_val,
                                   atol=1e-6)
    unkept = fused_train.run_jobs([fused_train.Job(mlp.with_defaults(drop[0]), 0, 7)], fold_data, fuse=Fuse(fuse))
    assert unkept[0].model is None


def test_precision_resolves_to_fp32_on_a_cpu_and_in_float64_and_travels_in_the_fuse():
    from trialfuse.engine.fused.precision import Precision
    from trialfuse.fuse import Fuse

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert Precision.parse("bf16").resolve(cpu, torch.float32).name == "fp32"
    assert Precision.parse("bf16").resolve(gpu, torch.float64).name == "fp32"
    assert Precision.parse("bf16").resolve(gpu, torch.float32).matmul_dtype == torch.bfloat16
    assert Precision.parse("tf32").resolve(gpu, torch.float32).matmul_dtype is None
    with Precision("tf32").matmuls():
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == "highest"
    carried = Fuse.from_json(Fuse.parse("8").with_precision("bf16").to_json())
    assert (carried.max_batch, carried.precision) == (8, "bf16")
    assert Fuse.from_json({"mode": "on"}).precision == "auto"  # an older driver's message


def test_bf16_matmuls_train_a_fused_batch_close_to_float32(table):
    """The bf16 path (what a GPU runs with --precision bf16), forced here on a CPU: the same
    models, matmuls in bfloat16, weights and BatchNorm in float32, scored in float32."""
    from trialfuse.engine.fused.precision import Precision

    X, y, folds = table
    data = [fused_train.prepare_fold(X, y, t, v) for t, v in folds]
    configs = [{**c, "dropout": 0.1, "epochs": 40} for c in MIXED if len(c["hidden_layers"]) == 2]
    jobs = [fused_train.Job(mlp.with_defaults(c), 0, seed=i * 3 + k, key=i * 3 + k)  # one fold: one row count
            for i, c in enumerate(configs) for k in range(3)]
    runs = {name: fused_train.train_fused_batch(jobs, data, torch.device("cpu"), torch.float32,
                                                precision=Precision(name)) for name in ("fp32", "bf16")}
    assert {r.precision for r in runs["bf16"]} == {"bf16"}
    gaps = [abs(a.r2 - b.r2) for a, b in zip(runs["fp32"], runs["bf16"], strict=True)]
    assert max(gaps) < 0.05 and 0 < np.mean(gaps) < 0.01


def test_a_precision_survives_the_legacy_max_batch_and_a_fuse_given_in_python(tmp_path):
    """Before: a legacy command's max_batch rebuilt the Fuse without its precision, and
    RunOptions replaced a Python-given Fuse's precision with the --precision default."""
    from trialfuse.driver.options import RunOptions, check_options
    from trialfuse.transport import source_dialect

    legacy = {"command": "train_batch", "fuse": {"mode": "on", "precision": "bf16"}, "max_batch": 4,
              "jobs": [{"model_type": "nn", "params": {}, "fold_path": "f.npz"}]}
    assert Fuse.from_json(source_dialect.from_legacy(legacy)["fuse"]) == Fuse("on", 4, "bf16")
    table = tmp_path / "t.csv"
    table.write_text("a,y\n" + "".join(f"{i},{i % 7}\n" for i in range(40)))
    for given, named, expected in ((Fuse("on", 4, "bf16"), "auto", "bf16"), ("auto", "tf32", "tf32")):
        opts = RunOptions(data=table, target="y", fuse=given, precision=named)
        check_options(opts)
        assert opts.fuse.precision == expected


@pytest.mark.parametrize("change, error, words", [
    ({"fuse": True}, TypeError, "fuse must be 'auto'"),  # before: AttributeError: 'bool' object has no attribute 'mode'
    ({"configs": {"hidden_layers": [8]}}, TypeError, "configs must be a list"),
    ({"X": np.zeros(10)}, ValueError, "X must be [rows, features]"),
    ({"folds": [(np.arange(5), np.arange(5, 99))]}, ValueError, "fold 0 must be"),
    ({"folds": []}, ValueError, "folds is empty"),
    ({"fuse": "sometimes"}, Exception, "--fuse must be auto, off, on"),
    ({"task": Task(Kind.BINARY, ("a", "b"))}, ValueError, "class codes 0..1"),  # y holds numbers, not codes
    ({"task": Task(Kind.MULTICLASS, ("a", "b", "c")), "y": np.r_[np.zeros(39), 3.0]}, ValueError, "class codes 0..2"),
])
def test_train_many_says_what_it_takes(change, error, words):
    X, y, _ = make_survivors(40, seed=0)
    arguments = {"configs": [{"hidden_layers": [8], "epochs": 2}], "X": X, "y": y,
                 "folds": [(np.arange(30), np.arange(30, 40))], **change}
    with pytest.raises(error, match=re.escape(words)):
        train_many(arguments.pop("configs"), arguments.pop("X"), arguments.pop("y"), arguments.pop("folds"),
                   **arguments)


@pytest.mark.parametrize("bands, class_weight", [(2, "balanced"), (3, "none")])
def test_fused_equals_serial_for_classes_in_float64(table, bands, class_weight, tmp_path):
    """Classes: one logit per class, softmax cross-entropy (class-weighted or not), probabilities
    out; fused and one at a time train the same models, and a kept model, written and exported,
    predicts the probabilities its fold scored."""
    X, score, folds = table
    labels = score_bands(score, bands)
    task = Task(Kind.BINARY if bands == 2 else Kind.MULTICLASS, tuple(sorted(set(labels))), "log_loss", class_weight)
    y = task.encode(pd.Series(labels))
    if class_weight == "balanced":  # make the classes unequal, so the weights differ from 1
        keep = np.flatnonzero((y == 0) | (np.arange(len(y)) % 3 == 0))
        X, y = X[keep], y[keep]
        folds = list(KFold(3, shuffle=True, random_state=0).split(X))
        assert task.row_weights(y).std() > 0.1
    configs = MIXED[:3]
    fused = train_many(configs, X, y, folds, fuse="on", dtype=torch.float64, task=task)
    serial = train_many(configs, X, y, folds, fuse="off", dtype=torch.float64, task=task)
    gains = []
    for f, s in zip(fused, serial, strict=True):
        assert f.batch_mode == "fused" and s.batch_mode == "serial"
        assert f.rounds_run == s.rounds_run and f.best_rounds == s.best_rounds
        assert f.predictions_val.shape == (len(folds[f.fold][1]), bands)
        np.testing.assert_allclose(f.predictions_val.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(f.predictions_val, s.predictions_val, rtol=0, atol=1e-6)
        assert f.score == pytest.approx(s.score, abs=1e-6) and f.val_loss == pytest.approx(-f.score, abs=1e-9)
        prior = task.score(y[folds[f.fold][1]], task.prior(y[folds[f.fold][0]], len(folds[f.fold][1])))
        gains.append(f.score - prior)
    if class_weight == "none":
        assert np.mean(gains) > 0.005  # it learned the bands, beyond the class shares
    else:  # the rare class weighs as much as the common one: its predicted share rises toward a half
        unweighted = train_many(configs, X, y, folds, fuse="off", dtype=torch.float64,
                                task=replace(task, class_weight="none"))
        rare = int(np.argmin(np.bincount(y.astype(int))))
        shares = [(w.predictions_val[:, rare].mean(), u.predictions_val[:, rare].mean())
                  for w, u in zip(serial, unweighted, strict=True)]
        assert all(w > u for w, u in shares) and np.mean([w - u for w, u in shares]) > 0.03, shares
    fold_data = [fused_train.prepare_fold(X, y, *folds[0], task)]
    jobs = [fused_train.Job(mlp.with_defaults(c), 0, 3 + k, key=k, keep=True) for k, c in enumerate(configs[:2])]
    for result in fused_train.run_jobs(jobs, fold_data, fuse=Fuse("on"), dtype=torch.float64):
        kept = tmp_path / mlp.keep(result.model, tmp_path)
        served = mlp.publish(kept, tmp_path, f"fold-{result.key}")
        np.testing.assert_allclose(mlp.predict(mlp.load(tmp_path / served), fold_data[0].raw[2]),
                                   result.predictions_val, atol=1e-6)


def test_folds_whose_codings_differ_in_width_train_fused_as_one_at_a_time(table):
    """Each fold codes its own training rows: a long tail with one value below zero is logged only
    in the folds whose training rows miss that value, and a column with one gap has a "missing"
    input only where training rows hold the gap. Folds of one size then differ in inputs, and
    must not share a stacked batch (before: torch.stack of unequal widths failed every job)."""
    X, y, folds = table
    tail = np.exp(1.5 * X[:, 0])
    gap = X[:, 1].copy()
    tail[folds[1][1][0]] = -1.0  # in fold 1's validation rows: fold 1 logs the tail, fold 2 does not
    gap[folds[2][1][0]] = np.nan  # in fold 2's validation rows: fold 1 trains on the gap, fold 2 does not
    X = np.column_stack([tail, gap, X[:, 2:]])
    widths = [fused_train.prepare_fold(X, y, *f).x_train.shape[1] for f in folds]
    assert widths[1] == widths[2] + 2  # folds 1 and 2 have 601 training rows each: one group before
    configs = [{**c, "batch_size": 0} for c in MIXED[:2]]
    fused = train_many(configs, X, y, folds, fuse="on", dtype=torch.float64)
    serial = train_many(configs, X, y, folds, fuse="off", dtype=torch.float64)
    for f, s in zip(fused, serial, strict=True):
        assert not isinstance(f, FoldFailed), f
        assert (f.rounds_run, f.best_rounds) == (s.rounds_run, s.best_rounds)
        np.testing.assert_allclose(f.predictions_val, s.predictions_val, rtol=0, atol=1e-6)


def test_fused_equals_serial_in_slices_of_rows_with_category_levels_in_float64(table, tmp_path):
    """Steps on slices of rows (`batch_size`): every model of a fold size takes the same slices in
    the same order (mlp.batch_order), so fused and one at a time still train the same, dropout,
    a category column read as levels and a long-tailed column's log included; a batch is cut by
    slice size, and a kept model serves raw rows as it scored."""
    X, y, folds = table
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 6, len(y)).astype(np.float64)
    codes[::17] = np.nan
    X = np.column_stack([np.exp(1.5 * X[:, 0]), X, codes])  # a long tail (its log is X[:, 0] again)
    y = y + np.array([0.0, 3.0, -2.0, 1.0, 0.5, -1.0])[np.nan_to_num(codes).astype(int)] * np.isfinite(codes)
    sliced = [{**c, "batch_size": size, "dropout": rate}
              for c, size, rate in zip(MIXED, (128, 128, 256, 0), (0.1, 0.0, 0.2, 0.1), strict=True)]
    fused = train_many(sliced, X, y, folds, fuse="on", dtype=torch.float64, categorical=[X.shape[1] - 1])
    serial = train_many(sliced, X, y, folds, fuse="off", dtype=torch.float64, categorical=[X.shape[1] - 1])
    # batches by the rows a step takes and fold size (600, 601, 601 rows): 128 and 256 both step on
    # 75 rows (an eighth of the fold), so three on fold 0 and six on folds 1-2; whole-fold steps apart
    assert [mlp.slice_rows(n, size) for n in (600, 601) for size in (128, 256, 0)] == [75, 75, 0] * 2
    assert [r.fused_batch_size for r in fused] == [3, 6, 6] * 3 + [1, 2, 2]
    steps = []
    for f, s in zip(fused, serial, strict=True):
        assert (f.rounds_run, f.best_rounds) == (s.rounds_run, s.best_rounds)
        np.testing.assert_allclose(f.predictions_val, s.predictions_val, rtol=0, atol=1e-6)
        steps.append(f.r2)
    assert np.mean(steps) > 0.3  # they learned (the MIXED configs reach 0.33-0.53 here)
    whole = train_many([{**c, "batch_size": 0} for c in sliced[:1]], X, y, folds[:1], fuse="off", dtype=torch.float64,
                       categorical=[X.shape[1] - 1])[0]
    assert whole.rounds_run != serial[0].rounds_run or abs(whole.r2 - serial[0].r2) > 1e-6  # slices change training
    fold_data = [fused_train.prepare_fold(X, y, *folds[0], categorical=[X.shape[1] - 1])]
    assert fold_data[0].coding.logged.tolist() == [0]
    assert fold_data[0].x_train.shape[1] == X.shape[1] + 1 - 1 + 6  # the tail's log; the codes their six levels
    jobs = [fused_train.Job(mlp.with_defaults(c), 0, 3 + k, key=k, keep=True) for k, c in enumerate(sliced[:2])]
    for result in fused_train.run_jobs(jobs, fold_data, fuse=Fuse("on"), dtype=torch.float64):
        served = mlp.load(tmp_path / mlp.keep(result.model, tmp_path))
        np.testing.assert_allclose(mlp.predict(served, X[folds[0][1]]), result.predictions_val, rtol=0, atol=1e-9)
        exported = mlp.load(tmp_path / mlp.publish(tmp_path / "model.kept", tmp_path, "served"))
        np.testing.assert_allclose(mlp.predict(exported, X[folds[0][1]]), result.predictions_val, rtol=0, atol=1e-9)
