"""Model families: what each trains, how it searches, how it saves.

Each family's module (named by its row in `trialfuse.catalog`) exposes the same four
functions and imports its library only when loaded, so the driver, which only names
families, never imports torch:

- `fit(params, X_train, y_train, X_val, y_val, *, device, threads, seed, rounds=None,
  deadline=None, task, categorical=()) -> Fitted`: with validation rows it stops early on
  them; with `X_val=None` it trains exactly `rounds` boosting rounds or epochs (the final
  retrain on all search rows). Past `deadline` (time.time()) it raises `DeadlineReached`
  within a round or an epoch, so a run's time budget holds inside a job too. `categorical`:
  the columns of X holding a category's codes, for a library that splits on categories
  natively (LightGBM); the others read the codes as numbers.
- `predict(model, X) -> np.ndarray` (float64, one value per row; X may hold NaN).
- `save(model, directory) -> str`: writes the library's native file, returns its name.
- `load(path)`: reads that file back with the library alone.
- `contributions(model, X)`, where the library computes SHAP values exactly (TreeSHAP in
  XGBoost, LightGBM, CatBoost): [rows, features], for the winner's explanation.

`family_module` hands each module out wrapped (column_screen.Screening), so params with `screen`
train, serve and save a model on the columns most related to the target, with no family the wiser.
"""
from __future__ import annotations

import importlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trialfuse.catalog import FAMILIES
from trialfuse.engine.column_screen import Screening


@dataclass
class Fitted:
    """A trained model and how many rounds (trees or epochs) it kept and ran."""

    model: Any
    best_rounds: int
    rounds_run: int


@dataclass
class FoldResult(Fitted):
    """One (config, fold) model trained with early stopping on its validation rows: its scores,
    its validation predictions (in the target's units, or class probabilities [rows, K]) and
    how it trained. The fused NN, the NN alone and the tree families each give one; `answer` is
    what the worker sends back."""

    score: float = math.nan  # the run's search metric on the validation rows, higher is better
    r2: float = math.nan  # numbers only (the source's protocol reports it)
    val_loss: float = math.nan  # the task's loss (Task.loss) on the validation rows
    train_loss: float = math.nan
    predictions_val: np.ndarray | None = None
    duration: float = 0.0  # compute seconds it used (a fused batch's time shared among its models)
    device: str = "cpu"
    batch_mode: str = "serial"  # or "fused": trained stacked with others
    fused_batch_size: int = 1  # models in its batch, at the end (a batch out of memory is halved)
    wall_seconds: float | None = None  # a fused model: how long its whole batch took to come back
    precision: str | None = None  # a fused batch's matmul precision
    key: int = 0  # its place in the caller's list of jobs
    fold: int = 0
    seed: int = 0

    def answer(self) -> dict[str, Any]:
        """The protocol's fields of a trained fold (transport/protocol.train_answer adds the rest)."""
        fields = {"score": self.score, "r2": self.r2, "val_loss": self.val_loss, "train_loss": self.train_loss,
                  "best_rounds": self.best_rounds,
                  "rounds_run": self.rounds_run, "duration": self.duration, "device": self.device,
                  "batch_mode": self.batch_mode, "fused_batch_size": self.fused_batch_size}
        return fields if self.wall_seconds is None else {**fields, "wall_seconds": self.wall_seconds}


@dataclass
class FoldFailed:
    """A (config, fold) model that could not train (e.g. out of memory alone); the others keep theirs."""

    key: int
    error: str


def family_module(name: str) -> Screening:
    """Import a family's training module on demand (inside a worker process), as one that also
    trains and serves screened models (column_screen.py: params with `screen`)."""
    return Screening(importlib.import_module(f"trialfuse.engine.families.{FAMILIES[name].engine}"))


class DeadlineReached(Exception):
    """The run's time budget ended while this job trained: its trial is cut, not failed."""


_stop_files: tuple[Path, ...] = ()  # the running job's (or fused task's) stop files (worker side; see `stoppable`)


@contextmanager
def stoppable(*stop_files: str | None):
    """While a job (or a fused task of several) trains: files whose appearance ends it as its
    deadline would, with a deadline or without. The driver writes a trial's file when it has
    decided the trial (pruned, failed, or cut: its other folds cannot finish in time), so the
    worker goes on to what it still needs instead of training a fold no one will use; a fused
    task stops once every file it was given exists (each of its trials decided), and never if
    one of its jobs came without one."""
    global _stop_files
    _stop_files = tuple(Path(f) for f in stop_files) if stop_files and all(stop_files) else ()
    try:
        yield
    finally:
        _stop_files = ()


def past_deadline(deadline: float | None) -> bool:
    """Past `deadline` (time.time(); None: none), or told to stop (`stoppable`)."""
    return (deadline is not None and time.time() > deadline) or (
        bool(_stop_files) and all(path.exists() for path in _stop_files))


def check_deadline(deadline: float | None) -> None:
    """Raise DeadlineReached once past `deadline` or told to stop (past_deadline)."""
    if past_deadline(deadline):
        raise DeadlineReached(STOPPED)


STOPPED = "stopped by the time budget or by the driver (its trial was decided)"
