"""Train many MLP configs x folds at once, one stacked model per batch: `train_many`.

Each model keeps its own fold, widths, activation, dropout, learning rate, weight decay,
optimizer, gradient clip, patience, min_delta and epoch budget; depth splits a batch
unless `pad_depths` (shallower models carried through identity layers), and so do fold
size (K-fold gives at most two) and rows per step (`mlp.slice_rows`, from `batch_size`: a
batch's models step on the same slices of their folds, `mlp.batch_order`). Early stopping is per model and
restores each model's best epoch. Finished models
are dropped from the batch once enough of it has stopped (the host looks only every few
epochs). How many models share a batch follows free device memory; on out-of-memory the
batch is halved and retried, down to one model, which then fails alone.

With the same seed, fused and one-at-a-time training start every model from the same
weights (`mlp.new_net`) and draw the same dropout masks (a hash of each model's seed, draw,
row and unit: engine/dropout.py), so they
give the same results, up to rounding: a model trains the same alone, fused, at any place
in any batch.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import numpy as np
import torch

from trialfuse.engine.families import Fitted, FoldFailed, FoldResult, check_deadline, mlp
from trialfuse.engine.fused import adam as fused_adam
from trialfuse.engine.fused.batching import AS_A_STUDY, Batching, Job, depth_group, plan_batches
from trialfuse.engine.fused.fold_data import FoldData, prepare_fold
from trialfuse.engine.fused.memory import attempt, memory_cap, out_of_memory, release_memory
from trialfuse.engine.fused.mlp import (
    StackedMLP,
    compiled_block,
    forward,
    hidden_block,
    stack_modules,
    unstack,
    use_compiler,
)
from trialfuse.engine.fused.precision import FP32, Precision
from trialfuse.engine.scores import fold_scores
from trialfuse.fuse import AUTO, Fuse
from trialfuse.seeds import model_seed
from trialfuse.task import NUMBERS, Task
from trialfuse.testing import faults

log = logging.getLogger(__name__)
SYNC_EVERY = 8  # epochs between host checks for finished models
def train_many(configs: list[dict[str, Any]], X: np.ndarray, y: np.ndarray, folds, *, device: str = "cpu",
               fuse: Fuse | str = "auto", seed: int = 0, dtype: torch.dtype = torch.float32,
               compiled: bool | None = None, batching: Batching = AS_A_STUDY, precision: str | None = None,
               deadline: float | None = None, task: Task = NUMBERS,
               categorical: Sequence[int] = ()) -> list[FoldResult | FoldFailed]:
    """Train every config on every fold; one result per (config, fold), config-major order.

    `folds` is a list of (train_idx, val_idx). `fuse` (a `Fuse` or its option text): "on" /
    N (stacked, at most N per batch), "off" (one at a time), "auto" (stacked on a GPU, one at
    a time on a CPU: there the stacked tensors [M, N, H] leave the caches one model's fit in,
    and `trialfuse bench` measures fused 1.7x slower at 1,000 training rows and 4.6x slower
    at 4,000 on 2 cores). `task`: what y is (trialfuse.task.Task; class codes 0..K-1 for classes,
    whose models then give class probabilities); numbers by default. `categorical`: the columns
    of X that hold category codes (input_coding.InputCoding).
    """
    X, y, folds, fuse = _checked(configs, X, y, folds, fuse, task)
    fold_data = [prepare_fold(X, y, t, v, task, categorical) for t, v in folds]
    jobs = [Job(mlp.with_defaults(c), k, model_seed(seed, i, k), key=i * len(folds) + k)
            for i, c in enumerate(configs) for k in range(len(folds))]
    return run_jobs(jobs, fold_data, device=device, fuse=fuse, dtype=dtype, compiled=compiled, batching=batching,
                    precision=precision, deadline=deadline)


def _checked(configs, X, y, folds, fuse, task: Task) -> tuple[np.ndarray, np.ndarray, list, Fuse]:
    """train_many's arguments as it uses them, or one TypeError/ValueError saying what it takes:
    a mistake reads as the caller's, not as an error from deep inside the trainer."""
    if not isinstance(configs, list | tuple) or not all(isinstance(c, dict) for c in configs):
        raise TypeError("train_many: configs must be a list of NN parameter dicts (e.g. [{'hidden_layers': [64, 32]}])")
    try:
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"train_many: X and y must be numeric arrays ({exc})") from None
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"train_many: X must be [rows, features] and y [rows], got {X.shape} and {y.shape}")
    if task.is_classification:
        top = len(task.classes) - 1
        if len(task.classes) < 2 or not np.all((y >= 0) & (y <= top) & (y == np.round(y))):
            raise ValueError(f"train_many: under a task of {len(task.classes)} classes y must hold class codes "
                             f"0..{top} (Task.encode gives them), one per row")
    pairs = []
    for k, fold in enumerate(folds):
        train, val = (np.asarray(part) for part in fold)
        if train.dtype.kind not in "iu" or val.dtype.kind not in "iu" or not len(train) or not len(val) or \
                max(train.max(), val.max()) >= len(y) or min(train.min(), val.min()) < 0:
            raise ValueError(f"train_many: fold {k} must be (train rows, validation rows) as non-empty integer "
                             f"index arrays into the {len(y)} rows")
        pairs.append((train, val))
    if not pairs:
        raise ValueError("train_many: folds is empty: give (train rows, validation rows) pairs, e.g. from KFold.split")
    if not isinstance(fuse, str | Fuse) or isinstance(fuse, bool):
        raise TypeError(f"train_many: fuse must be 'auto', 'off', 'on', a number of models as text, or a Fuse; "
                        f"got {fuse!r}")
    return X, y, pairs, Fuse.parse(fuse)


def run_jobs(jobs: list[Job], fold_data: list[FoldData], *, device: str = "cpu", fuse: Fuse = AUTO,
             dtype: torch.dtype = torch.float32, deadline: float | None = None,
             compiled: bool | None = None, batching: Batching = AS_A_STUDY,
             precision: str | None = None) -> list[FoldResult | FoldFailed]:
    """Results in the order of `jobs` (each tagged with its job's key). Past `deadline`
    (time.time()) training stops within 64 steps and DeadlineReached is raised.
    `compiled`: run the hidden layers through torch.compile (None: where `use_compiler` says);
    `batching`: how stacked batches are cut (see `Batching`); `precision`: the stacked
    batches' matmuls (see `precision.Precision`; None: `fuse.precision`; one at a time trains in
    `dtype`)."""
    dev = torch.device(device)
    chosen = Precision.parse(precision or fuse.precision).resolve(dev, dtype)
    block = None  # the hidden layers' code, chosen (and compiled) once a group trains stacked
    results: dict[int, FoldResult | FoldFailed] = {}
    # what one stacked model holds: depth, slices, rows and inputs (each fold codes its own: a
    # column with a gap or a log in one fold's training rows and not another's adds inputs there)
    groups: dict[tuple[int, int, int, int], list[Job]] = {}
    for job in jobs:
        fold = fold_data[job.fold]
        n_train = len(fold.y_train)
        key = (depth_group(job, batching), mlp.slice_rows(n_train, int(job.params["batch_size"])), n_train,
               fold.x_train.shape[1])
        groups.setdefault(key, []).append(job)
    for (_, _, n_train, _), group in groups.items():
        stacked = fuse.mode == "on" or (fuse.mode == "auto" and dev.type == "cuda" and len(group) > 1)
        if not stacked:
            for job in group:
                result, message = attempt(partial(_train_serial, job, fold_data, dev, dtype, deadline))
                if message is not None:
                    release_memory(dev)
                    result = out_of_memory(job, message)
                results[job.key] = result
            continue
        with chosen.matmuls():
            if block is None:
                compile_it = use_compiler(dev) if compiled is None else compiled
                block = compiled_block(dev, dtype, chosen.matmul_dtype) if compile_it else hidden_block
            cap = fuse.max_batch or memory_cap(group, fold_data, dev, dtype)
            for batch in plan_batches(group, n_train, cap, batching):
                for result in _train_halving(batch, fold_data, dev, dtype, deadline, block, chosen):
                    results[result.key] = result
    return [results[job.key] for job in jobs]


def _train_halving(jobs: list[Job], fold_data, dev, dtype, deadline: float | None,
                   block: Callable = hidden_block, precision: Precision = FP32) -> list[FoldResult | FoldFailed]:
    """Train `jobs` as one batch; a batch that runs out of memory is split in two and
    retried, down to one model, which then fails alone (the other batches keep their results).
    Each result's `fused_batch_size` says how many models its batch finally held."""
    pending = [jobs]
    done: list[FoldResult | FoldFailed] = []
    while pending:
        batch = pending.pop(0)
        trained, message = attempt(partial(_train_fused, batch, fold_data, dev, dtype, deadline, block, precision))
        if message is None:
            done += trained
            continue
        release_memory(dev)
        if len(batch) == 1:
            done.append(out_of_memory(batch[0], message))
            continue
        log.warning("out of memory with %d models fused; retrying as two batches of %d and %d",
                    len(batch), len(batch) // 2, len(batch) - len(batch) // 2)
        half = len(batch) // 2
        pending[:0] = [batch[:half], batch[half:]]
    return done


def _train_fused(batch: list[Job], fold_data, dev, dtype, deadline: float | None,
                 block: Callable, precision: Precision) -> list[FoldResult]:
    if faults.out_of_memory(len(batch)):
        raise torch.cuda.OutOfMemoryError(f"injected: out of memory with {len(batch)} models")
    return train_fused_batch(batch, fold_data, dev, dtype, deadline, block, precision)


class _Rows:
    """One side (train or val) of every model's fold: x [M, N, F], y [M, N], row weights [M, N]
    or None; equal N in a batch. The loss is the head's (`mlp.Head`), per model."""

    def __init__(self, xs: list[torch.Tensor], ys: list[torch.Tensor], head: mlp.Head,
                 weights: list[torch.Tensor | None] | None = None):
        self.x = torch.stack(xs)
        self.y = torch.stack(ys)
        self.head = head
        self.weights = torch.stack(weights) if weights and weights[0] is not None else None
        self._cast: dict[torch.dtype, torch.Tensor] = {}

    def inputs(self, dtype: torch.dtype | None) -> torch.Tensor:
        """x in the matmuls' dtype (None: its own), cast once, not every epoch."""
        if dtype is None or dtype == self.x.dtype:
            return self.x
        if dtype not in self._cast:
            self._cast[dtype] = self.x.to(dtype)
        return self._cast[dtype]

    def select(self, keep: torch.Tensor) -> _Rows:
        new = object.__new__(_Rows)
        new.x, new.y, new.head, new._cast = self.x[keep], self.y[keep], self.head, {}
        new.weights = None if self.weights is None else self.weights[keep]
        return new

    def loss(self, out: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """[M] each model's mean loss (as mlp.fit's) on its rows `rows` (None: all)."""
        if rows is None:
            return self.head.loss(out, self.y, self.weights)
        return self.head.loss(out, self.y[:, rows], None if self.weights is None else self.weights[:, rows])


@dataclass
class FusedState:
    """Everything a fused batch tracks per model, model dimension first, so finished models
    leave the batch with one `select(keep)` (as optax keeps an optimizer's state in one tuple)."""

    model: StackedMLP
    train: _Rows  # x [M, N_train, F], y [M, N_train]
    val: _Rows  # x [M, N_val, F], y [M, N_val]
    adam: fused_adam.AdamState
    hyper: fused_adam.AdamHyper  # [M] learning rate, weight decay, AdamW or Adam
    best: list[torch.Tensor]  # the best epoch's params and BatchNorm buffers, as model.params() + buffers()
    clip: torch.Tensor  # [M] gradient-norm limit (0: none)
    patience: torch.Tensor  # [M] epochs without improvement before a model stops
    budget: torch.Tensor  # [M] epoch budget
    min_delta: torch.Tensor  # [M] improvement that counts
    best_loss: torch.Tensor  # [M] best validation loss so far
    best_epoch: torch.Tensor  # [M] epoch of best_loss (the budget until one improves)
    waited: torch.Tensor  # [M] epochs since the last improvement
    ran: torch.Tensor  # [M] epochs trained
    active: torch.Tensor  # [M] bool: still training
    alive: torch.Tensor  # [M] batch slot -> index into the batch's jobs

    def __post_init__(self) -> None:
        self.params = [p.requires_grad_(True) for p in self.model.params()]
        self.masks = self.model.param_masks()

    def select(self, keep: torch.Tensor) -> FusedState:
        """The models at slots `keep`, every per-model value with them."""
        picked = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in picked.items():
            if isinstance(value, torch.Tensor):
                picked[name] = value[keep]
        picked["model"], picked["train"], picked["val"] = (x.select(keep) for x in (self.model, self.train, self.val))
        picked["adam"] = fused_adam.AdamState(self.adam.step[keep], [t[keep] for t in self.adam.exp_avg],
                                              [t[keep] for t in self.adam.exp_avg_sq])
        picked["hyper"] = fused_adam.AdamHyper(*(h[keep] for h in self.hyper))
        picked["best"] = [b[keep] for b in self.best]
        return FusedState(**picked)


def _initial_state(jobs: list[Job], fold_data: list[FoldData], dev: torch.device, dtype) -> FusedState:
    """Every model from its seed's weights (as `mlp.new_net` builds them alone), on its own fold."""
    n_features = fold_data[jobs[0].fold].x_train.shape[1]  # the batch's folds' (run_jobs groups by it)
    heads = {fold_data[j.fold].head for j in jobs}
    if len(heads) != 1:
        raise ValueError("a fused batch trains one task: its folds' targets differ")
    head = heads.pop()
    nets = [mlp.new_net(n_features, j.params, j.seed, head.outputs) for j in jobs]
    slopes = [mlp.LEAKY_SLOPE if j.params["use_leaky_relu"] else 0.0 for j in jobs]
    model = stack_modules(nets, slopes, [float(j.params["dropout"]) for j in jobs], dtype, dev)
    column = lambda key: torch.tensor([float(j.params[key]) for j in jobs], dtype=dtype, device=dev)  # noqa: E731
    m = len(jobs)
    budget = column("epochs")
    folds = {j.fold: fold_data[j.fold].on(dev, dtype) for j in jobs}
    return FusedState(
        model=model,
        train=_Rows([folds[j.fold][0] for j in jobs], [folds[j.fold][1] for j in jobs], head,
                    [folds[j.fold][4] for j in jobs]),
        val=_Rows([folds[j.fold][2] for j in jobs], [folds[j.fold][3] for j in jobs], head),
        adam=fused_adam.init(model.params()),
        hyper=fused_adam.AdamHyper(column("learning_rate"), column("weight_decay"),
                                   torch.tensor([j.params["optimizer"] == "adamw" for j in jobs], device=dev)),
        best=[t.detach().clone() for t in (*model.params(), *model.buffers())],
        clip=column("gradient_clip"), patience=column("early_stopping_patience"), budget=budget,
        min_delta=column("min_delta"),
        best_loss=torch.full((m,), math.inf, dtype=dtype, device=dev), best_epoch=budget.clone(),
        waited=torch.zeros(m, dtype=dtype, device=dev), ran=torch.zeros(m, dtype=dtype, device=dev),
        active=torch.ones(m, dtype=torch.bool, device=dev), alive=torch.arange(m, device=dev))


def train_fused_batch(jobs: list[Job], fold_data: list[FoldData], dev: torch.device, dtype: torch.dtype,
                      deadline: float | None = None, block: Callable = hidden_block,
                      precision: Precision = FP32) -> list[dict[str, Any]]:
    """Train `jobs` (folds of one size) as one stacked model; results in job order.

    Each epoch is `mlp.fit`'s epoch for every model at once: its steps, on all training rows or
    on the slices `mlp.batch_order` gives every model of the batch alike (per-model gradient
    clipping, Adam/AdamW), then validation loss, best weights and patience per model.
    The epochs' matmuls run in `precision`; the models are scored at the end in `dtype`, as
    the kept models predict."""
    check_deadline(deadline)
    started = time.perf_counter()
    s = _initial_state(jobs, fold_data, dev, dtype)
    results: dict[int, dict[str, Any]] = {}
    max_epochs = int(s.budget.max())
    low = precision.matmul_dtype
    batch_size = int(jobs[0].params["batch_size"])  # its slices are every job's (run_jobs groups by mlp.slice_rows)
    for epoch in range(max_epochs):
        for step, rows in enumerate(mlp.batch_order(s.train.y.shape[1], batch_size, epoch, dev) or [None]):
            if step % mlp.DEADLINE_CHECK_STEPS == 0:  # the clock, not the models: no host sync
                check_deadline(deadline)
            x = s.train.inputs(low) if rows is None else s.train.inputs(low)[:, rows]
            steps = s.adam.step.long()  # [M] optimizer steps taken: each model's dropout draws follow them
            pred = forward(s.model, x, train=True, block=block, step=steps, matmul_dtype=low)
            grads = torch.autograd.grad(s.train.loss(pred, rows).sum(), s.params)  # d(sum)/dθ_m = dL_m/dθ_m
            grads = [g * mask for g, mask in zip(grads, s.masks, strict=True)]
            norm = torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads))  # [M] per-model gradient norm
            scale = torch.where(s.clip > 0, torch.clamp(s.clip / (norm + 1e-6), max=1.0), torch.ones_like(norm))
            grads = [g * scale.reshape(-1, 1, 1) for g in grads]
            s.adam = fused_adam.update(s.params, grads, s.adam, s.hyper, s.active)
        s.ran = s.ran + s.active.to(dtype)
        with torch.no_grad():
            val_loss = s.val.loss(forward(s.model, s.val.inputs(low), train=False, block=block, matmul_dtype=low))
            finite = torch.isfinite(val_loss)
            improved = s.active & finite & (val_loss < s.best_loss - s.min_delta)
            s.best_loss = torch.where(improved, val_loss, s.best_loss)
            s.best_epoch = torch.where(improved, s.ran, s.best_epoch)
            s.waited = torch.where(improved, torch.zeros_like(s.waited), s.waited + s.active.to(dtype))
            for b, current in zip(s.best, (*s.params, *s.model.buffers()), strict=True):
                b.copy_(torch.where(improved.reshape(-1, 1, 1), current, b))
            s.active = s.active & finite & (s.waited < s.patience) & (s.ran < s.budget)
        if (epoch + 1) % SYNC_EVERY and epoch + 1 < max_epochs:
            continue
        n_active = int(s.active.sum())  # the only host sync, every SYNC_EVERY epochs
        if n_active == 0:
            break
        check_deadline(deadline)
        if n_active <= len(s.alive) // 2 and len(s.alive) > 2:  # compact: finished models stop costing compute
            finished = torch.nonzero(~s.active).flatten()
            _finish(s.select(finished), jobs, fold_data, results, block)
            # a finished model stays beside a last active one: a batch never shrinks to one model,
            # whose size-1 shapes would be a compiled graph of their own, compiled mid-training
            s = s.select(torch.nonzero(s.active).flatten() if n_active > 1 else torch.sort(
                torch.cat([torch.nonzero(s.active).flatten(), finished[:1]])).values)
    _finish(s, jobs, fold_data, results, block)
    elapsed = time.perf_counter() - started
    out = [results[i] for i in range(len(jobs))]
    for r in out:
        r.precision = precision.name
        r.duration = elapsed / len(jobs)  # the batch's time, shared evenly
        r.wall_seconds = elapsed  # how long the model took to come back: what time estimates need
        r.fused_batch_size = len(jobs)
    return out


def _finish(s: FusedState, jobs: list[Job], fold_data: list[FoldData], results: dict[int, FoldResult],
            block: Callable) -> None:
    """Score the models of `s` with their best weights and record their results: in exact float32
    (or float64) matmuls whatever the training precision, as the kept models predict."""
    for target, value in zip((*s.model.params(), *s.model.buffers()), s.best, strict=True):
        target.detach().copy_(value)
    with torch.no_grad(), FP32.matmuls():
        pred_train = forward(s.model, s.train.x, train=False, block=block)
        pred_val = forward(s.model, s.val.x, train=False, block=block)
    dev = pred_train.device
    for slot, index in enumerate(s.alive.tolist()):
        job, fold = jobs[index], fold_data[jobs[index].fold]
        model = None
        if job.keep:
            net = unstack(s.model, slot, fold.x_train.shape[1], job.params["hidden_layers"],
                          bool(job.params["use_leaky_relu"]))
            model = mlp.ScaledMLP(net, fold.coding, fold.y_mean, fold.y_std, fold.head).to(
                net.layers[0].weight.dtype).eval()
        in_units = [fold.head.in_units(p[slot].double(), fold.y_mean, fold.y_std).cpu().numpy()
                    for p in (pred_train, pred_val)]
        results[index] = _score(job, fold, *in_units, Fitted(model, int(s.best_epoch[slot]), int(s.ran[slot])),
                                dev, "fused")


def _score(job: Job, fold: FoldData, pred_train: np.ndarray, pred_val: np.ndarray, fitted: Fitted,
           dev: torch.device, mode: str) -> FoldResult:
    """One (config, fold) model's result, from its predictions in the target's units."""
    _, y_train, _, y_val = fold.raw
    return FoldResult(fitted.model, fitted.best_rounds, fitted.rounds_run,
                      **fold_scores(fold.task, y_train, pred_train, y_val, pred_val), predictions_val=pred_val,
                      device=str(dev), batch_mode=mode, key=job.key, fold=job.fold, seed=job.seed)


def _train_serial(job: Job, fold_data: list[FoldData], dev: torch.device, dtype,
                  deadline: float | None = None) -> FoldResult:
    """One model alone with `mlp.fit`: the reference the fused path must equal."""
    started = time.perf_counter()
    fold = fold_data[job.fold]
    X_train, y_train, X_val, y_val = fold.raw
    fitted = mlp.fit(job.params, X_train, y_train, X_val, y_val, device=str(dev), seed=job.seed, dtype=dtype,
                     deadline=deadline, task=fold.task, categorical=fold.categorical)
    result = _score(job, fold, mlp.predict(fitted.model, X_train), mlp.predict(fitted.model, X_val), fitted, dev,
                    "serial")
    if not job.keep:
        result.model = None
    result.duration = time.perf_counter() - started
    return result
