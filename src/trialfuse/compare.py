"""compare-models: search every family, rank by CV R², retrain the winner, score the holdout once.

This is the driver. It reads and checks the table (all user errors surface here, before
any worker starts), splits rows, runs one Optuna study per family on worker processes,
then writes the run directory. It never imports torch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
from sklearn.metrics import r2_score

from trialfuse import run_dir
from trialfuse.devices import resolve_devices
from trialfuse.errors import UserError
from trialfuse.families import FAMILIES
from trialfuse.report import build_report
from trialfuse.splits import check_split_sizes, holdout_split, kfold_indices
from trialfuse.storage import open_storage
from trialfuse.study import IN_FLIGHT, FamilyResult, job_seed, run_family_study
from trialfuse.table import Table, load_table
from trialfuse.worker_pool import WorkerPool


@dataclass
class RunOptions:
    """Everything `trialfuse run` accepts; the Python API takes the same."""

    data: Path
    target: str | None = None
    models: list[str] = field(default_factory=lambda: list(FAMILIES))
    trials: int = 20
    folds: int = 5
    holdout: float = 0.2
    out: Path | None = None
    storage: str | None = None
    seed: int = 0
    devices: str = "auto"
    fuse: str = "auto"  # auto | off | N (at most N NN models per fused batch)
    prune: bool = True  # stop a clearly losing trial after its first folds
    timeout: str | float | None = None  # whole-run budget: seconds or "90s", "20m", "6h"
    job_timeout: str | float | None = None  # one task on one worker; past it the worker is killed


class Reporter(Protocol):
    """Receives progress; the CLI shows it with rich, the API may ignore it."""

    def family_started(self, family: str, trials: int) -> None: ...
    def trial_finished(self, result: FamilyResult) -> None: ...
    def family_finished(self, result: FamilyResult) -> None: ...
    def stage(self, message: str) -> None: ...


class SilentReporter:
    def family_started(self, family: str, trials: int) -> None: ...
    def trial_finished(self, result: FamilyResult) -> None: ...
    def family_finished(self, result: FamilyResult) -> None: ...
    def stage(self, message: str) -> None: ...


def parse_models(text: str | list[str]) -> list[str]:
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if not names:
        raise UserError("--models is empty: name at least one of " + ", ".join(FAMILIES))
    unknown = [m for m in names if m not in FAMILIES]
    if unknown:
        raise UserError(f"unknown model family {unknown[0]!r} (choose from {', '.join(FAMILIES)})")
    return list(dict.fromkeys(names))


def parse_duration(text: str | float | None, option: str = "--timeout") -> float | None:
    """'90s', '20m', '6h', '1.5h' or plain seconds -> seconds; None stays None."""
    if text is None or isinstance(text, int | float):
        seconds = None if text is None else float(text)
    else:
        value = str(text).strip().lower()
        unit = {"s": 1, "m": 60, "h": 3600}.get(value[-1:], None)
        number = value[:-1] if unit else value
        try:
            seconds = float(number) * (unit or 1)
        except ValueError:
            raise UserError(f"{option} must be a duration like 90s, 20m or 6h, got {text!r}") from None
    if seconds is not None and not seconds > 0:
        raise UserError(f"{option} must be positive, got {text!r}")
    return seconds


def check_options(opts: RunOptions) -> None:
    """Reject bad option values with one line each, before reading any data."""
    opts.models = parse_models(opts.models)
    if opts.trials < 1:
        raise UserError(f"--trials must be at least 1, got {opts.trials}")
    if opts.folds < 2:
        raise UserError(f"--folds must be at least 2, got {opts.folds}")
    if not 0 < opts.holdout < 1:
        raise UserError(f"--holdout must be a fraction between 0 and 1, got {opts.holdout}")
    if opts.seed < 0:
        raise UserError(f"--seed must be zero or positive, got {opts.seed}")
    if opts.out is not None and Path(opts.out).exists() and not Path(opts.out).is_dir():
        raise UserError(f"--out {opts.out} exists and is not a directory")
    resolve_devices(opts.devices)
    opts.timeout = parse_duration(opts.timeout)
    opts.job_timeout = parse_duration(opts.job_timeout, "--job-timeout")
    opts.fuse = str(opts.fuse).strip().lower()
    if opts.fuse not in ("auto", "off") and not (opts.fuse.isdigit() and int(opts.fuse) > 0):
        raise UserError(f"--fuse must be auto, off or a positive number of models, got {opts.fuse!r}")


def compare_models(opts: RunOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run the whole comparison and return what was written to results.json."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    check_options(opts)
    table = load_table(opts.data, opts.target)
    check_split_sizes(table.rows, opts.holdout, opts.folds)
    device, workers = resolve_devices(opts.devices)
    out = Path(opts.out) if opts.out else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    run_dir.clear_leftovers(out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    rest, sealed = holdout_split(table.rows, opts.holdout, opts.seed)
    folds = kfold_indices(len(rest), opts.folds, opts.seed)
    run_dir.write_json(out / run_dir.HOLDOUT, {"holdout_rows": sealed, "seed": opts.seed, "fraction": opts.holdout})
    storage = open_storage(opts.storage, out)
    workers = min(workers, opts.folds) if device == "cpu" else workers

    families: dict[str, FamilyResult] = {}
    deadline = time.monotonic() + opts.timeout if opts.timeout else None
    with WorkerPool(table.X[rest], table.y[rest], folds, device=device, workers=workers,
                    job_timeout=opts.job_timeout, scratch=out, fuse=opts.fuse,
                    nn_jobs_per_task=nn_task_size(opts.folds, workers)) as pool:
        for position, family in enumerate(opts.models):
            reporter.family_started(family, opts.trials)
            share = None  # each family left gets an equal part of what is left of the budget
            if deadline is not None:
                share = time.monotonic() + (deadline - time.monotonic()) / (len(opts.models) - position)
            anything_done = any(f.trials_complete for f in families.values())
            result = run_family_study(family, storage, opts.trials, opts.folds, opts.seed, pool,
                                      on_trial=reporter.trial_finished, deadline=share,
                                      must_start=not anything_done, prune=opts.prune)
            families[family] = result
            reporter.family_finished(result)
        ranking = sorted((f for f in families.values() if f.status == "ok"), key=lambda f: -f.cv_r2_mean)
        if not ranking:
            reasons = "; ".join(f"{f.family}: {f.reason}" for f in families.values())
            raise RuntimeError(f"every model family failed ({reasons})")
        winner = ranking[0]
        reporter.stage(f"retraining {winner.family} on {len(rest)} rows and scoring the holdout")
        final = _retrain_winner(pool, winner, table, rest, sealed, out, opts.seed)
        warnings = _nn_diagnostics(pool, families.get("nn"), out, opts.seed, reporter)
        run_dir.write_json(out / run_dir.TIMELINE, {"device": device, "workers": workers, "tasks": pool.timeline})

    results = {
        "data": str(opts.data), "target": table.target, "rows": table.rows, "features": len(table.feature_names),
        "holdout_rows": len(sealed), "folds": opts.folds, "seed": opts.seed, "device": device, "workers": workers,
        "fuse": opts.fuse, "prune": opts.prune,
        "storage": opts.storage or str(out / run_dir.JOURNAL),
        "families": {name: r.summary() for name, r in families.items()},
        "ranking": [f.family for f in ranking],
        "timeout_seconds": opts.timeout,
        "budget_exhausted": any(f.stopped_by_budget for f in families.values()),
        "winner": winner.family,
        "holdout_r2": final["holdout_r2"],
        "warnings": warnings,
        "seconds": time.perf_counter() - started,
        "out": str(out),
    }
    run_dir.write_json(out / run_dir.RESULTS, results)
    try:
        reporter.stage(f"report: {build_report(out)}")
    except Exception as exc:  # the results are saved; a plotting failure must not hide them
        reporter.stage(f"the report could not be written ({type(exc).__name__}: {exc}); "
                       f"retry with `trialfuse report {out}`")
    return results


def nn_task_size(folds: int, workers: int) -> int:
    """NN folds per worker task: about two tasks per worker for the trials in flight, so a
    worker that finishes early finds the next task waiting (at least one trial's folds)."""
    return max(folds, math.ceil(IN_FLIGHT["nn"] * folds / (2 * workers)))


def _nn_diagnostics(pool: WorkerPool, nn: FamilyResult | None, out: Path, seed: int,
                    reporter: Reporter) -> list[str]:
    """Probe the best NN trial (diagnostics.json) and return its warnings, each prefixed "nn: "."""
    if nn is None or nn.status != "ok":
        return []
    reporter.stage("NN diagnostics: training the best NN config once more on fold 0")
    try:
        report = pool.diagnose(nn.best_params, job_seed(seed, nn.best_trial))
    except Exception as exc:  # a probe that fails must not cost the run its results
        return [f"nn: the diagnostics probe failed: {exc}"]
    report["trial"] = nn.best_trial
    run_dir.write_json(out / run_dir.DIAGNOSTICS, report)
    return [f"nn: {w}" for w in report["warnings"]]


def _retrain_winner(pool: WorkerPool, winner: FamilyResult, table: Table, rest: np.ndarray, sealed: np.ndarray,
                    out: Path, seed: int) -> dict[str, Any]:
    """Retrain on all search rows for the CV-chosen round count; save; score the holdout once."""
    rounds = max(1, int(round(float(np.mean(winner.best_rounds))))) if winner.best_rounds else None
    staged = run_dir.staging_dir(out)
    final = pool.retrain(winner.family, winner.best_params, rounds, table.X[sealed], staged, job_seed(seed, -1))
    holdout_r2 = float(r2_score(table.y[sealed], np.asarray(final["predictions"], dtype=np.float64)))
    run_dir.write_json(staged / run_dir.METADATA, {
        "family": winner.family,
        "params": winner.best_params,
        "rounds": final["rounds"],
        "model_file": final["model_file"],
        "feature_names": table.feature_names,
        "categories": table.categories,
        "dropped_columns": table.dropped,
        "target": table.target,
        "cv_r2_mean": winner.cv_r2_mean,
        "cv_r2_folds": winner.cv_r2_folds,
        "holdout_r2": holdout_r2,
        "best_trial": winner.best_trial,
        "train_rows": len(rest),
        "seed": seed,
        "libraries": run_dir.library_versions(),
        "created": datetime.now().isoformat(timespec="seconds"),
    })
    run_dir.publish_model_dir(staged, out)
    return {"holdout_r2": holdout_r2, "retrain_seconds": final["seconds"]}
