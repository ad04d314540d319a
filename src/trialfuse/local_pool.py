"""Worker processes on this machine that train folds for the driver.

The driver never imports torch: every fit happens in a spawned worker that received the
search rows once, at start. Each worker gets an equal share of the CPU cores, or one GPU.
A worker that dies takes only its in-flight trials down: the pool is rebuilt and those
trials are reported failed.
"""
from __future__ import annotations

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

    def run_trials(self, jobs: list[tuple[str, dict[str, Any], list[int], int]]) -> list[list[dict] | TrialFailed]:
        """Run several trials' folds at once: jobs are (family, params, folds, seed).

        Returns per trial its fold results in fold order, or the TrialFailed that stopped it.
        """
        futures: list[list[Future]] = [
            [self._pool().submit(fold_jobs.run_fold, family, params, fold, seed) for fold in folds]
            for family, params, folds, seed in jobs
        ]
        outcomes: list[list[dict] | TrialFailed] = []
        broken = False
        for trial_futures in futures:
            try:
                outcomes.append([f.result() for f in trial_futures])
            except BrokenProcessPool:
                broken = True
                outcomes.append(TrialFailed("a worker process died while training this trial"))
            except Exception as exc:  # the job's own error, raised inside the worker
                outcomes.append(TrialFailed(f"{type(exc).__name__}: {exc}"))
        if broken:
            self.close()
        return outcomes

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
