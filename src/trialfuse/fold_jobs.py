"""Work that runs inside a worker process: train one fold, or retrain and save the winner.

The worker holds the search rows and the fold definitions from its start, so a job names
only a family, its params, a fold and a seed. This module imports the model libraries
(torch among them) only when a job needs them, and never from the driver.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import mean_squared_error, r2_score

from trialfuse.families import family_module


@dataclass
class WorkerData:
    """What a worker keeps resident: the search rows and the K folds over them."""

    X: np.ndarray  # [rows, features], NaN = missing
    y: np.ndarray  # [rows]
    folds: list[tuple[np.ndarray, np.ndarray]]
    threads: int
    device: str


_DATA: WorkerData | None = None
_FOLDS: list | None = None  # NN fold data, standardized once per worker
FAULT_ENV = "TRIALFUSE_INJECT_FAULT"  # "fail:<family>": that family's folds raise (for fault tests)


def init_worker(X, y, folds, threads: int, device: str, gpu_slots=None) -> None:
    """Process-pool initializer: pin a GPU (before any CUDA library loads) and keep the data."""
    global _DATA
    if gpu_slots is not None:
        with gpu_slots.get_lock():
            slot = gpu_slots.value
            gpu_slots.value += 1
        gpus = device.split(":", 1)[1].split(",")
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        device = "cuda:0"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    _DATA = WorkerData(X=X, y=y, folds=folds, threads=threads, device=device)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """A worker must not outlive its driver (kill -9 included): when the parent is gone, so
    is the worker. A daemon thread watches the parent pid, which changes on re-parenting."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_fold(family: str, params: dict[str, Any], fold: int, seed: int) -> dict[str, Any]:
    """Train `family` on one fold with early stopping; score it on the fold's validation rows."""
    data = _DATA
    assert data is not None, "init_worker was not called in this process"
    if os.environ.get(FAULT_ENV) == f"fail:{family}":
        raise RuntimeError(f"injected fault for {family}")
    train, val = data.folds[fold]
    started = time.perf_counter()
    module = family_module(family)
    fitted = module.fit(params, data.X[train], data.y[train], data.X[val], data.y[val],
                        device=data.device, threads=data.threads, seed=seed)
    pred_val = module.predict(fitted.model, data.X[val])
    pred_train = module.predict(fitted.model, data.X[train])
    if not (np.all(np.isfinite(pred_val)) and np.all(np.isfinite(pred_train))):
        raise FloatingPointError("the model predicts non-finite values (training diverged)")
    return {
        "fold_idx": fold,
        "r2": float(r2_score(data.y[val], pred_val)),
        "val_mse": float(mean_squared_error(data.y[val], pred_val)),
        "train_mse": float(mean_squared_error(data.y[train], pred_train)),
        "best_rounds": int(fitted.best_rounds),
        "rounds_run": int(fitted.rounds_run),
        "duration": time.perf_counter() - started,
        "device": data.device,
    }


def run_nn_batch(jobs: list[tuple[dict[str, Any], int, int]], fuse: bool | str = "auto",
                 max_batch: int | None = None) -> list[dict[str, Any]]:
    """Train NN (params, fold, seed) jobs together, fused where that is faster; results in job order.

    The folds are standardized once per worker and kept for every later batch.
    """
    from trialfuse import fused_train  # torch: only ever inside a worker

    global _FOLDS
    data = _DATA
    assert data is not None, "init_worker was not called in this process"
    if os.environ.get(FAULT_ENV) == "fail:nn":
        raise RuntimeError("injected fault for nn")
    if _FOLDS is None:
        _FOLDS = [fused_train.prepare_fold(data.X, data.y, train, val) for train, val in data.folds]
    batch = [fused_train.Job(fused_train.mlp.with_defaults(p), fold, seed, key=i)
             for i, (p, fold, seed) in enumerate(jobs)]
    results = fused_train.run_jobs(batch, _FOLDS, device=data.device, fuse=fuse, max_batch=max_batch)
    for r in results:
        r.pop("predictions_val", None)
        r["best_rounds"] = r["best_epoch"]
    return results


def retrain_and_save(family: str, params: dict[str, Any], rounds: int, X: np.ndarray, y: np.ndarray,
                     X_score: np.ndarray, directory: str, seed: int) -> dict[str, Any]:
    """Train on all search rows for a fixed round count, save natively, and predict `X_score`
    with the model read back from disk, so the recorded score is the saved model's score."""
    data = _DATA
    device, threads = (data.device, data.threads) if data else ("cpu", None)
    module = family_module(family)
    started = time.perf_counter()
    fitted = module.fit(params, X, y, device=device, threads=threads, seed=seed, rounds=rounds)
    Path(directory).mkdir(parents=True, exist_ok=True)
    filename = module.save(fitted.model, directory)
    reloaded = module.load(Path(directory) / filename)
    return {"model_file": filename, "predictions": module.predict(reloaded, X_score),
            "rounds": int(fitted.rounds_run), "seconds": time.perf_counter() - started}
