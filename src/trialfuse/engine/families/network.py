"""The NN family as a worker uses it: `mlp`'s network (fit, predict, save, load, keep, publish),
trained many at once by the fused trainer (`prepare_fold`, `fit_many`: catalog `batched`),
with a training probe (`diagnose`: catalog `diagnostics`).

Apart from `mlp` so imports run one way: the fused trainer and the probe build on the
network, and this module builds on all three.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trialfuse.engine import diagnostics
from trialfuse.engine.families import FoldFailed, FoldResult
from trialfuse.engine.families.mlp import fit, keep, load, predict, publish, save, with_defaults
from trialfuse.engine.fused import train as fused_train
from trialfuse.engine.fused.memory import release_memory
from trialfuse.task import NUMBERS, Task

__all__ = ["diagnose", "fit", "fit_many", "keep", "load", "predict", "prepare_fold", "publish", "save"]


def prepare_fold(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray,
                 task: Task = NUMBERS, categorical: Sequence[int] = ()) -> fused_train.FoldData:
    """A fold as `fit_many` takes it, coded on its training rows (`categorical`: the columns of
    category codes); a worker prepares a resident fold once and reuses it for every batch."""
    return fused_train.prepare_fold(X, y, train, val, task, categorical)


def fit_many(jobs: list[tuple[dict[str, Any], int, bool]], folds: list[fused_train.FoldData], *, device: str, fuse,
             deadline: float | None = None) -> list[FoldResult | FoldFailed]:
    """Many (params, seed, keep the model) fits, the i-th on prepared fold `folds[i]`, trained
    as one fused model where that is faster (engine/fused): a result each, in order, a
    FoldFailed for a model that could not train."""
    runs = [fused_train.Job(with_defaults(params), key, seed, key=key, keep=keep)
            for key, (params, seed, keep) in enumerate(jobs)]
    results = fused_train.run_jobs(runs, folds, device=device, fuse=fuse, deadline=deadline)
    if device.startswith("cuda"):  # the next task, maybe another family, starts from a clean cache
        release_memory(device)
    return results


def diagnose(params: dict[str, Any], X_train, y_train, X_val, y_val, *, seed: int, device: str = "cpu",
             threads: int | None = None, task: Task = NUMBERS, categorical: Sequence[int] = (),
             deadline: float | None = None) -> dict[str, Any]:
    """The training-dynamics probe (engine/diagnostics.py): one more training of `params`, watched."""
    return diagnostics.diagnose(params, X_train, y_train, X_val, y_val, seed=seed, device=device, threads=threads,
                                task=task, categorical=categorical, deadline=deadline)
