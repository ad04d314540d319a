"""`trialfuse run`'s options, checked and parsed once into typed values before any data is read."""
from __future__ import annotations

import importlib.util
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trialfuse.catalog import FAMILIES
from trialfuse.driver import run_dir
from trialfuse.driver.devices import plan_workers
from trialfuse.driver.splits import classes_fill
from trialfuse.driver.target import parse_class_weight, parse_task
from trialfuse.errors import UserError
from trialfuse.fuse import Fuse
from trialfuse.task import FOLDS, Task

DEFAULT_TRIALS = 20  # per family, when neither --trials nor --timeout is given


@dataclass
class RunOptions:
    """Everything `trialfuse run` accepts; the Python API takes the same."""

    data: Path | pd.DataFrame  # a table file, or a DataFrame (kept in the run directory as data.parquet)
    target: str | None = None
    task: str = "auto"  # auto | regression | binary | multiclass (see trialfuse.task)
    metric: str | None = None  # the search metric; None: the task's own (R², log-loss)
    class_weight: str | dict = "none"  # none | balanced: classes weigh the same in training (classes only);
    # from Python also scikit-learn's {label: weight}
    models: list[str] | None = None  # None: catalog.DEFAULT_MODELS
    trials: int | None = None  # per family; None: DEFAULT_TRIALS, or with a timeout as many as it allows
    folds: int | None = None  # K; None: the task's (Task.default_folds)
    holdout: float = 0.2
    out: Path | None = None
    storage: str | None = None
    seed: int = 0
    devices: str | int = "auto"  # an int from Python is the CLI's worker count
    ray: str | None = None  # workers as Ray actors: "local" (a Ray instance of this machine), "auto" or an address
    fuse: str | Fuse = "auto"  # auto | off | N (at most N NN models per fused batch); a Fuse once checked
    precision: str = "auto"  # the fused NN batches' matmuls: auto | fp32 | tf32 | bf16 (carried in the Fuse)
    prune: bool = True  # stop a clearly losing trial after its first folds
    ensemble: bool = True  # keep out-of-fold predictions; save an ensemble where it beats the best model
    refit: bool = False  # retrain each saved model on all search rows (off: served by their K fold models)
    portfolio: bool = True  # new studies start from the catalog's known-good configurations (off: the bench)
    timeout: str | float | None = None  # whole-run budget: seconds or "90s", "20m", "6h"
    job_timeout: str | float | None = None  # one task on one worker; past it the worker is killed
    explain: bool = True  # explain the winner on the holdout after its score (explain.json, report)
    keep_columns: list[str] = field(default_factory=list)  # row-naming columns to use as features anyway


def parse_models(text: str | list[str]) -> list[str]:
    if not isinstance(text, str | list | tuple) or not all(isinstance(m, str) for m in text):
        raise UserError(f"--models must name families ({', '.join(FAMILIES)}), got {text!r}")
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if not names:
        raise UserError("--models is empty: name at least one of " + ", ".join(FAMILIES))
    unknown = [m for m in names if m not in FAMILIES]
    if unknown:
        raise UserError(f"unknown model family {unknown[0]!r} (choose from {', '.join(FAMILIES)})")
    return list(dict.fromkeys(names))


def parse_duration(text: str | float | None, option: str = "--timeout") -> float | None:
    """Plain seconds, or any duration pandas' Timedelta reads ('90s', '20m', '1.5h', '1h30m')
    -> seconds; None stays None."""
    if text is None:
        return None
    if isinstance(text, bool) or not isinstance(text, str | numbers.Real):
        raise UserError(f"{option} must be a duration like 90s, 20m or 6h, got {text!r}")
    try:
        seconds = float(text)
    except ValueError:
        import pandas as pd  # loaded by every run's table reading anyway; not for `--help`

        try:
            with warnings.catch_warnings():  # '2d': pandas warns it prefers 'D', and reads it right
                warnings.simplefilter("ignore")
                seconds = pd.Timedelta(str(text).strip()).total_seconds()
        except (ValueError, OverflowError):
            raise UserError(f"{option} must be a duration like 90s, 20m or 6h, got {text!r}") from None
    if not seconds > 0:
        raise UserError(f"{option} must be positive, got {text!r}")
    return seconds


def folds_of(opts: RunOptions, task: Task, y: np.ndarray, stamped: int | None = None) -> int:
    """K for the run: --folds; else the K a resumed search was started with (`stamped`: a rerun
    of the same command continues it, though the default has changed since); else the task's
    for the target `y`, or its kind's usual K where the classes could not fill that many beside
    the holdout (a rare class of a few rows, a large --holdout)."""
    if opts.folds is not None:
        return opts.folds
    if stamped:
        return stamped
    k = task.default_folds(y)
    return k if classes_fill(task, y, opts.holdout, k, opts.seed) else FOLDS[task.kind]


def check_options(opts: RunOptions) -> None:
    """Reject bad option values with one line each, before reading any data. Values from Python
    are typed here once: a NumPy number (a GridSearchCV grid's np.arange) becomes the Python
    number it is (the fingerprint and results.json are JSON), a wrong type is refused naming
    the option and what it takes (never a traceback, nor a misleading "too few rows")."""
    opts.models = None if opts.models is None else parse_models(opts.models)
    opts.task = parse_task(opts.task)
    opts.class_weight = parse_class_weight(opts.class_weight)
    opts.trials = _whole(opts.trials, "--trials", 1)
    opts.folds = _whole(opts.folds, "--folds", 2)
    opts.seed = _whole(opts.seed, "--seed", 0)
    if isinstance(opts.holdout, bool) or not isinstance(opts.holdout, numbers.Real):
        raise UserError(f"--holdout must be a fraction between 0 and 1, got {opts.holdout!r}")
    opts.holdout = float(opts.holdout)
    if not 0 < opts.holdout < 1:
        raise UserError(f"--holdout must be a fraction between 0 and 1, got {opts.holdout:g}")
    if isinstance(opts.devices, numbers.Integral) and not isinstance(opts.devices, bool):
        opts.devices = str(int(opts.devices))  # devices=2 from Python: the CLI's "2", two CPU workers
    opts.devices = _of_type(opts.devices, "--devices", str, "auto, cpu, a worker count (N or cpu:N) or cuda:IDS")
    for flag in ("prune", "ensemble", "refit", "portfolio", "explain"):
        value = getattr(opts, flag)
        if not isinstance(value, bool | np.bool_):
            raise UserError(f"--{flag} is true or false, got {value!r}")
        setattr(opts, flag, bool(value))
    if opts.out is not None:
        opts.out = Path(_of_type(opts.out, "--out", str | os.PathLike, "a folder's path"))
        run_dir.check_out(opts.out)
    if opts.storage is not None:  # a journal's Path, as `out` takes one
        opts.storage = os.fspath(_of_type(opts.storage, "--storage", str | os.PathLike, "a journal path or a URL"))
    if opts.ray is None:  # on Ray the cluster's nodes say what they hold
        plan_workers(opts.devices)
    if opts.ray is not None:
        if opts.devices != "auto":
            raise UserError("--devices and --ray: on Ray the cluster's GPUs and CPUs decide the workers")
        if importlib.util.find_spec("ray") is None:
            raise UserError("--ray needs Ray: pip install 'trialfuse[ray]'")
    opts.timeout = parse_duration(opts.timeout)
    if opts.trials is None and opts.timeout is None:
        opts.trials = DEFAULT_TRIALS
    opts.job_timeout = parse_duration(opts.job_timeout, "--job-timeout")
    fuse = Fuse.parse(opts.fuse)  # a Fuse given in Python keeps its precision unless one is named
    opts.fuse = fuse.with_precision(fuse.precision if opts.precision == "auto" else opts.precision)
    if isinstance(opts.keep_columns, str):
        opts.keep_columns = [c.strip() for c in opts.keep_columns.split(",") if c.strip()]
    if not isinstance(opts.keep_columns, list | tuple) or not all(isinstance(c, str) for c in opts.keep_columns):
        raise UserError(f"--keep-columns must be column names, got {opts.keep_columns!r}")
    opts.keep_columns = list(opts.keep_columns)


def _whole(value, option: str, least: int) -> int | None:
    """A count or a seed as a Python int (None stays None); a bool, a fraction or text is refused."""
    if value is None and option != "--seed":
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # np.bool_ is no Integral
        raise UserError(f"{option} must be a whole number (at least {least}), got {value!r}")
    if value < least:
        raise UserError(f"{option} must be at least {least}, got {value}" if least else
                        f"{option} must be zero or positive, got {value}")
    return int(value)


def _of_type(value, option: str, kind, what: str):
    if not isinstance(value, kind):
        raise UserError(f"{option} must be {what}, got {value!r} ({type(value).__name__})")
    return value
