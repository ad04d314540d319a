"""Train many MLP configs x folds at once, one stacked model per batch: `train_many`.

Each model keeps its own fold, widths, activation, dropout, learning rate, weight decay,
optimizer, gradient clip, patience, min_delta and epoch budget; only depth splits a
batch (and fold size: K-fold gives at most two). Early stopping is per model and
restores each model's best epoch. Finished models
are dropped from the batch once enough of it has stopped (the host looks only every few
epochs). How many models share a batch follows free device memory; on out-of-memory the
batch is halved and retried, down to one model.

With the same seed, fused and one-at-a-time training start every model from the same
weights (`mlp.new_net`), and without dropout they give the same results.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trialfuse import fused_adam
from trialfuse.errors import FAULT_ENV
from trialfuse.families import mlp
from trialfuse.fused_mlp import forward, stack_modules
from trialfuse.scores import fold_scores
from trialfuse.standardize import column_stats, standardize

log = logging.getLogger(__name__)
# FAULT_ENV "oom:N": a fused batch of more than N models runs out of memory (for the OOM tests)
SYNC_EVERY = 8  # epochs between host checks for finished models
CPU_MAX_BATCH = 32


@dataclass
class FoldData:
    """One fold, standardized with its training rows' statistics (as `mlp.fit` does)."""

    x_train: np.ndarray  # [N_train, F]
    y_train: np.ndarray  # [N_train] standardized target
    x_val: np.ndarray
    y_val: np.ndarray
    y_mean: float
    y_std: float
    raw: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # unscaled X/y train and val


def prepare_fold(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray) -> FoldData:
    x_mean, x_std = column_stats(X[train])  # training rows only: validation rows never leak in
    y_mean, y_std = mlp.target_stats(y[train])
    return FoldData(standardize(X[train], x_mean, x_std), (y[train] - y_mean) / y_std,
                    standardize(X[val], x_mean, x_std), (y[val] - y_mean) / y_std, y_mean, y_std,
                    (X[train], y[train], X[val], y[val]))


@dataclass
class Job:
    """One model to train: a config on a fold, from a seed."""

    params: dict[str, Any]
    fold: int
    seed: int
    key: int = 0  # position in the caller's list


def train_many(configs: list[dict[str, Any]], X: np.ndarray, y: np.ndarray, folds, *, device: str = "cpu",
               fuse: bool | str = "auto", seed: int = 0, dtype: torch.dtype = torch.float32,
               max_batch: int | None = None, events: list | None = None) -> list[dict[str, Any]]:
    """Train every config on every fold; one result per (config, fold), config-major order.

    `folds` is a list of (train_idx, val_idx). `fuse`: True (stacked), False (one at a time),
    "auto" (stacked on a GPU, one at a time on a CPU: there the stacked tensors [M, N, H]
    leave the caches one model's fit in, and `trialfuse bench` measures fused 1.7x slower
    at 1,000 training rows and 4.6x slower at 4,000 on 2 cores).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fold_data = [prepare_fold(X, y, np.asarray(t), np.asarray(v)) for t, v in folds]
    jobs = [Job(mlp.with_defaults(c), k, model_seed(seed, i, k), key=i * len(folds) + k)
            for i, c in enumerate(configs) for k in range(len(folds))]
    return run_jobs(jobs, fold_data, device=device, fuse=fuse, dtype=dtype, max_batch=max_batch, events=events)


def model_seed(seed: int, config: int, fold: int) -> int:
    return (seed * 1_000_003 + config * 7919 + fold * 104_729) % (2**31 - 1)


def run_jobs(jobs: list[Job], fold_data: list[FoldData], *, device: str = "cpu", fuse: bool | str = "auto",
             dtype: torch.dtype = torch.float32, max_batch: int | None = None,
             events: list | None = None) -> list[dict[str, Any]]:
    """Results in the order of `jobs` (each tagged with its job's key)."""
    dev = torch.device(device)
    results: dict[int, dict[str, Any]] = {}
    groups: dict[tuple[int, int], list[Job]] = {}  # (depth, training rows): what one stacked model can hold
    for job in jobs:
        groups.setdefault((len(job.params["hidden_layers"]), len(fold_data[job.fold].y_train)), []).append(job)
    for group in groups.values():
        if fuse == "auto":
            mode = "fused" if dev.type == "cuda" and len(group) > 1 else "serial"
        else:
            mode = "fused" if fuse else "serial"
        if mode == "serial":
            for job in group:
                results[job.key] = _train_serial(job, fold_data, dev, dtype)
            continue
        cap = max_batch or _memory_cap(group, fold_data, dev, dtype)
        for result in _train_halving(group, fold_data, dev, dtype, cap, events if events is not None else []):
            results[result["key"]] = result
    return [results[job.key] for job in jobs]


def _train_halving(jobs: list[Job], fold_data, dev, dtype, cap: int, events: list) -> list[dict[str, Any]]:
    """Train in batches of at most `cap`; a batch that runs out of memory is split in two and retried."""
    pending = [jobs[i:i + cap] for i in range(0, len(jobs), cap)]
    done: list[dict[str, Any]] = []
    while pending:
        batch = pending.pop(0)
        try:
            done += train_fused_batch(batch, fold_data, dev, dtype)
            events.append(("ok", len(batch)))
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc) or len(batch) == 1:
                raise
            events.append(("oom", len(batch)))
            log.warning("out of memory with %d models fused; retrying as two batches of %d and %d",
                        len(batch), len(batch) // 2, len(batch) - len(batch) // 2)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch) // 2
            pending[:0] = [batch[:half], batch[half:]]
    return done


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "not enough memory" in text


def _memory_cap(jobs: list[Job], fold_data, dev: torch.device, dtype) -> int:
    """Models per batch that fit in ~70% of free device memory (by a per-model estimate)."""
    if dev.type != "cuda":
        return CPU_MAX_BATCH
    free, _ = torch.cuda.mem_get_info(dev)
    itemsize = torch.empty((), dtype=dtype).element_size()
    n_train = max(len(f.y_train) for f in fold_data)
    n_val = max(len(f.y_val) for f in fold_data)
    n_features = fold_data[0].x_train.shape[1]
    widths = [max(w) for w in zip(*(j.params["hidden_layers"] for j in jobs), strict=True)]
    n_params = sum(a * b for a, b in zip([n_features, *widths], [*widths, 1], strict=True))
    # inputs + ~8 activation-sized tensors per layer kept for backward + params, grads, moments, best copy
    per_model = itemsize * ((n_train + n_val) * n_features + 8 * n_train * sum(widths) + 6 * n_params)
    return max(1, min(len(jobs), int(0.7 * free / per_model)))


class _Rows:
    """One side (train or val) of every model's fold: x [M, N, F], y [M, N]; equal N in a batch."""

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray], dtype, dev):
        self.x = torch.as_tensor(np.stack(xs), dtype=dtype, device=dev)
        self.y = torch.as_tensor(np.stack(ys), dtype=dtype, device=dev)

    def select(self, keep: torch.Tensor) -> _Rows:
        new = object.__new__(_Rows)
        new.x, new.y = self.x[keep], self.y[keep]
        return new

    def mse(self, pred: torch.Tensor) -> torch.Tensor:  # [M] mean squared error of each model
        return ((pred - self.y) ** 2).mean(1)


def train_fused_batch(jobs: list[Job], fold_data: list[FoldData], dev: torch.device,
                      dtype: torch.dtype) -> list[dict[str, Any]]:
    """Train `jobs` (one depth, folds of one size) as one stacked model; results in job order."""
    limit = os.environ.get(FAULT_ENV, "")
    if limit.startswith("oom:") and len(jobs) > int(limit[4:]):
        raise torch.OutOfMemoryError(f"injected: out of memory with {len(jobs)} models")
    started = time.perf_counter()
    n_features = fold_data[0].x_train.shape[1]
    nets = [mlp.new_net(n_features, j.params, j.seed) for j in jobs]
    slopes = [mlp.LEAKY_SLOPE if j.params["use_leaky_relu"] else 0.0 for j in jobs]
    model = stack_modules(nets, slopes, [float(j.params["dropout"]) for j in jobs], dtype, dev)
    train = _Rows([fold_data[j.fold].x_train for j in jobs], [fold_data[j.fold].y_train for j in jobs], dtype, dev)
    val = _Rows([fold_data[j.fold].x_val for j in jobs], [fold_data[j.fold].y_val for j in jobs], dtype, dev)

    column = lambda key, kind=dtype: torch.tensor([j.params[key] for j in jobs], dtype=kind, device=dev)  # noqa: E731
    hyper = fused_adam.AdamHyper(column("learning_rate"), column("weight_decay"),
                                 torch.tensor([j.params["optimizer"] == "adamw" for j in jobs], device=dev))
    clip = column("gradient_clip")
    patience, budget = column("early_stopping_patience"), column("epochs")
    min_delta = column("min_delta")
    generator = torch.Generator(device=dev).manual_seed(jobs[0].seed)

    params = [p.requires_grad_(True) for p in model.params()]
    masks = model.param_masks()
    state = fused_adam.init(params)
    best = [t.detach().clone() for t in (*params, *model.buffers())]
    m = len(jobs)
    best_loss = torch.full((m,), math.inf, dtype=dtype, device=dev)
    best_epoch = budget.clone()
    waited = torch.zeros(m, dtype=dtype, device=dev)
    ran = torch.zeros(m, dtype=dtype, device=dev)
    active = torch.ones(m, dtype=torch.bool, device=dev)
    alive = torch.arange(m, device=dev)  # batch slot -> job index
    results: dict[int, dict[str, Any]] = {}

    def finish(slots: torch.Tensor) -> None:
        """Score the models in `slots` with their best weights and record their results."""
        final = model.select(slots)
        tensors = [b[slots] for b in best]
        for target, value in zip((*final.params(), *final.buffers()), tensors, strict=True):
            target.copy_(value)
        with torch.no_grad():
            pred_train = forward(final, train.select(slots).x, train=False)
            pred_val = forward(final, val.select(slots).x, train=False)
        for s, slot in enumerate(slots.tolist()):
            index = int(alive[slot])
            job, fold = jobs[index], fold_data[jobs[index].fold]
            results[index] = _score(job, fold, pred_train[s].double().cpu().numpy(),
                                    pred_val[s].double().cpu().numpy(), int(ran[slot]),
                                    int(best_epoch[slot]), dev, "fused", len(jobs))

    max_epochs = int(budget.max())
    for epoch in range(max_epochs):
        pred = forward(model, train.x, train=True, generator=generator)
        grads = torch.autograd.grad(train.mse(pred).sum(), params)  # models are independent: d(sum)/dθ_m = dL_m/dθ_m
        grads = [g * mask for g, mask in zip(grads, masks, strict=True)]
        norm = torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads))  # [M] per-model gradient norm
        scale = torch.where(clip > 0, torch.clamp(clip / (norm + 1e-6), max=1.0), torch.ones_like(norm))
        grads = [g * scale.reshape(-1, 1, 1) for g in grads]
        state = fused_adam.update(params, grads, state, hyper, active)
        ran = ran + active.to(dtype)
        with torch.no_grad():
            val_loss = val.mse(forward(model, val.x, train=False))
            finite = torch.isfinite(val_loss)
            improved = active & finite & (val_loss < best_loss - min_delta)
            best_loss = torch.where(improved, val_loss, best_loss)
            best_epoch = torch.where(improved, ran, best_epoch)
            waited = torch.where(improved, torch.zeros_like(waited), waited + active.to(dtype))
            for b, current in zip(best, (*params, *model.buffers()), strict=True):
                b.copy_(torch.where(improved.reshape(-1, 1, 1), current, b))
            active = active & finite & (waited < patience) & (ran < budget)
        if (epoch + 1) % SYNC_EVERY and epoch + 1 < max_epochs:
            continue
        n_active = int(active.sum())  # the only host sync, every SYNC_EVERY epochs
        if n_active == 0:
            break
        if n_active <= len(alive) // 2:  # compact: finished models stop costing compute
            stopped, keep = torch.nonzero(~active).flatten(), torch.nonzero(active).flatten()
            finish(stopped)
            model, train, val = model.select(keep), train.select(keep), val.select(keep)
            params = [p.requires_grad_(True) for p in model.params()]
            masks = model.param_masks()
            state = fused_adam.AdamState(state.step[keep], [t[keep] for t in state.exp_avg],
                                         [t[keep] for t in state.exp_avg_sq])
            best = [b[keep] for b in best]
            hyper = fused_adam.AdamHyper(*(h[keep] for h in hyper))
            clip, patience, budget, min_delta = clip[keep], patience[keep], budget[keep], min_delta[keep]
            best_loss, best_epoch, waited, ran, active = (t[keep] for t in (best_loss, best_epoch, waited, ran, active))
            alive = alive[keep]
    finish(torch.arange(len(alive), device=dev))
    elapsed = time.perf_counter() - started
    out = [results[i] for i in range(len(jobs))]
    for r in out:
        r["duration"] = elapsed / len(jobs)  # the batch's time, shared evenly
    return out


def _score(job: Job, fold: FoldData, pred_train: np.ndarray, pred_val: np.ndarray, epochs_run: int,
           best_epoch: int, dev: torch.device, mode: str, batch_size: int) -> dict[str, Any]:
    """The result dict of one (config, fold) model, from standardized-unit predictions."""
    _, y_train, _, y_val = fold.raw
    p_train = pred_train * fold.y_std + fold.y_mean
    p_val = pred_val * fold.y_std + fold.y_mean
    return {
        "key": job.key, "fold_idx": job.fold, "seed": job.seed, **fold_scores(y_train, p_train, y_val, p_val),
        "epochs_run": epochs_run, "best_rounds": best_epoch, "best_epoch": best_epoch,
        "device": str(dev), "batch_mode": mode, "fused_batch_size": batch_size,
        "predictions_val": p_val,
    }


def _train_serial(job: Job, fold_data: list[FoldData], dev: torch.device, dtype) -> dict[str, Any]:
    """One model alone with `mlp.fit`: the reference the fused path must equal."""
    started = time.perf_counter()
    fold = fold_data[job.fold]
    X_train, y_train, X_val, y_val = fold.raw
    fitted = mlp.fit(job.params, X_train, y_train, X_val, y_val, device=str(dev), seed=job.seed, dtype=dtype)
    p_train = (mlp.predict(fitted.model, X_train) - fold.y_mean) / fold.y_std
    p_val = (mlp.predict(fitted.model, X_val) - fold.y_mean) / fold.y_std
    result = _score(job, fold, p_train, p_val, fitted.rounds_run, fitted.best_rounds, dev, "serial", 1)
    result["duration"] = time.perf_counter() - started
    return result
