"""Worker processes on this machine that train folds for the driver.

The driver never imports torch: every fit happens in a spawned worker that received the
search rows once, at start. Each worker gets an equal share of the CPU cores, or one GPU.
A worker that dies takes only its in-flight trials down: the pool is rebuilt and those
trials are reported failed.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from trialfuse import fold_jobs


class TrialFailed(Exception):
    """A trial's fold could not be trained; the message says why."""


class LocalPool:
    def __init__(self, X: np.ndarray, y: np.ndarray, folds, *, device: str = "cpu", workers: int = 1):
        self.device = device
        self.workers = max(1, workers)
        cores = os.cpu_count() or 1
        self.threads = max(1, cores // self.workers)
        self._initargs = (X, y, folds, self.threads, device)
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited CUDA or thread state
            gpu_slots = ctx.Value("i", 0) if self.device.startswith("cuda") else None
            self._executor = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=fold_jobs.init_worker,
                                                 initargs=(*self._initargs, gpu_slots))
        return self._executor

    def run_trials(self, jobs: list[tuple[str, dict[str, Any], list[int], int]],
                   fuse: str | int = "auto") -> list[list[dict] | TrialFailed]:
        """Run several trials' folds at once: jobs are (family, params, folds, seed).

        Tree folds are spread one per task over the workers; NN folds of all the trials go
        as one batch per worker, trained fused (`fuse`: "auto", "off" or a cap on models
        per fused batch). Returns per trial its fold results in fold order, or the
        TrialFailed that stopped it.
        """
        if jobs and jobs[0][0] == "nn":
            futures = self._submit_nn(jobs, fuse)
        else:
            futures = [[self._pool().submit(fold_jobs.run_fold, family, params, fold, seed).result for fold in folds]
                       for family, params, folds, seed in jobs]
        outcomes: list[list[dict] | TrialFailed] = []
        broken = False
        for trial_futures in futures:
            try:
                folds = [get() for get in trial_futures]
                if not all(math.isfinite(r["r2"]) for r in folds):
                    raise FloatingPointError("the model predicts non-finite values (training diverged)")
                outcomes.append(folds)
            except BrokenProcessPool:
                broken = True
                outcomes.append(TrialFailed("a worker process died while training this trial"))
            except Exception as exc:  # the job's own error, raised inside the worker
                outcomes.append(TrialFailed(f"{type(exc).__name__}: {exc}"))
        if broken:
            self.close()
        return outcomes

    def _submit_nn(self, jobs, fuse: str | int) -> list[list]:
        """One fused batch per worker; per trial, a result getter for each fold."""
        flat = [(t, params, fold, seed) for t, (_, params, folds, seed) in enumerate(jobs) for fold in folds]
        share = -(-len(flat) // self.workers)  # ceil: the batches differ by at most one model
        fuse_arg, cap = ("auto", None) if fuse == "auto" else (False, None) if fuse == "off" else (True, int(fuse))
        where: dict[int, tuple[Future, int]] = {}
        for start in range(0, len(flat), share):
            chunk = flat[start:start + share]
            future = self._pool().submit(fold_jobs.run_nn_batch, [(p, f, s) for _, p, f, s in chunk], fuse_arg, cap)
            for offset in range(len(chunk)):
                where[start + offset] = (future, offset)
        getters: list[list] = [[] for _ in jobs]
        for i, (t, *_rest) in enumerate(flat):
            future, offset = where[i]
            getters[t].append(lambda future=future, offset=offset: future.result()[offset])
        return getters

    def call(self, fn, *args) -> Any:
        """Run one function in a worker (the final retrain) and return its result."""
        return self._pool().submit(fn, *args).result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
