"""One fold as the NN trains on it: coded with its training rows' `input_coding.InputCoding` (as
`mlp.fit` does), prepared once per worker and reused by every batch, with the task its
target is (numbers, or class codes) and its training rows' class weights."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from trialfuse.engine.families import mlp
from trialfuse.engine.input_coding import InputCoding
from trialfuse.task import NUMBERS, Task


@dataclass
class FoldData:
    """One fold, coded with its training rows' statistics and levels (as `mlp.fit` does)."""

    x_train: np.ndarray  # [N_train, width] the network's inputs
    y_train: np.ndarray  # [N_train] standardized target
    x_val: np.ndarray
    y_val: np.ndarray
    y_mean: float
    y_std: float
    coding: InputCoding  # from the training rows (what a kept model is wrapped with)
    raw: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # unscaled X/y train and val
    task: Task = NUMBERS  # what the fold's target is (a batch trains one task)
    weights: np.ndarray | None = None  # [N_train] training row weights (class weights), None: all 1
    categorical: tuple[int, ...] = ()  # the raw columns that hold category codes (a serial fit codes them too)
    resident: dict = field(default_factory=dict, repr=False)  # (device, dtype) -> its tensors there

    @property
    def head(self) -> mlp.Head:
        return mlp.Head.of(self.task)

    def on(self, dev: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor | None, ...]:
        """x_train, y_train, x_val, y_val, training weights (or None) on `dev`, copied there once:
        a batch stacks its models' folds from these with a device copy (from host arrays, 100
        models' 98,000-row folds took seconds of stacking and converting per batch)."""
        key = (str(dev), dtype)
        if key not in self.resident:
            target = self.head.target_dtype(dtype)
            self.resident[key] = tuple(None if a is None else torch.as_tensor(a, dtype=kind).to(dev) for a, kind in (
                (self.x_train, dtype), (self.y_train, target), (self.x_val, dtype), (self.y_val, target),
                (self.weights, dtype)))
        return self.resident[key]


def prepare_fold(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, task: Task = NUMBERS,
                 categorical: Sequence[int] = ()) -> FoldData:
    """`categorical`: the columns of X that hold category codes (see input_coding.InputCoding)."""
    coding = InputCoding.of(X[train], categorical)  # training rows only: validation rows never leak in
    y_mean, y_std = mlp.Head.of(task).target_stats(y[train])
    return FoldData(coding.apply(X[train]), (y[train] - y_mean) / y_std, coding.apply(X[val]),
                    (y[val] - y_mean) / y_std, y_mean, y_std, coding, (X[train], y[train], X[val], y[val]), task,
                    task.row_weights(y[train]), tuple(int(c) for c in categorical))
