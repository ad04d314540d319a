"""compare-models: search every family, rank by CV score, retrain the winner, score the holdout once.

This is the driver. It reads and checks the table (all user errors surface here, before
any worker starts), splits rows, runs one Optuna study per family on worker processes,
then writes the run directory. It never imports torch.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import numpy as np
import optuna
import pandas as pd

from trialfuse.catalog import DEFAULT_MODELS, FAMILIES, SCREEN, screens
from trialfuse.driver import final_model, fingerprint, run_dir
from trialfuse.driver.budget import Budget, say_seconds
from trialfuse.driver.data_checks import copies_in_holdout
from trialfuse.driver.devices import describe, idle_gpus_note, plan_workers
from trialfuse.driver.explanation import explain_winner
from trialfuse.driver.journal_lock import sole_driver
from trialfuse.driver.options import RunOptions, check_options, folds_of
from trialfuse.driver.out_of_fold import MODELS, OutOfFold
from trialfuse.driver.run_record import RunRecord
from trialfuse.driver.scheduler import run_studies
from trialfuse.driver.splits import (
    FEW_HOLDOUT_ROWS,
    check_class_sizes,
    check_split_sizes,
    holdout_split,
    kfold_indices,
)
from trialfuse.driver.storage import complete_scores, held_for_rerun, journal_path, open_storage, running_trials, shown
from trialfuse.driver.table import load_table
from trialfuse.driver.table_files import FORMATS
from trialfuse.driver.trial_records import FamilyResult
from trialfuse.errors import RunFailed
from trialfuse.seeds import model_seed
from trialfuse.task import Task
from trialfuse.transport.placement import gpus_without_cuda_note
from trialfuse.transport.process_pool import WorkerPool
from trialfuse.transport.protocol import TIMED_OUT


class Reporter(Protocol):
    """Receives progress; the CLI shows it with rich, the API may ignore it. A reporter may also
    have `task_decided(task, line)` (what the run predicts, and the line saying so); one without
    it gets that line through `stage`, so reporters written before tasks keep working."""

    def family_started(self, family: str, trials: int | None) -> None: ...
    def trial_finished(self, result: FamilyResult) -> None: ...
    def family_finished(self, result: FamilyResult) -> None: ...
    def stage(self, message: str) -> None: ...
    def watch(self, activity: Callable[[], list[tuple[str, str]]]) -> None: ...


class SilentReporter:
    def task_decided(self, task: Task, line: str | None) -> None: ...
    def family_started(self, family: str, trials: int | None) -> None: ...
    def trial_finished(self, result: FamilyResult) -> None: ...
    def family_finished(self, result: FamilyResult) -> None: ...
    def stage(self, message: str) -> None: ...
    def watch(self, activity: Callable[[], list[tuple[str, str]]]) -> None: ...


def _workers(opts: RunOptions):
    """(slots, how to start a worker): processes on this machine, or Ray actors over a cluster."""
    if opts.ray is None:
        return plan_workers(opts.devices), None
    from trialfuse.transport import ray_workers

    ray_workers.connect(opts.ray)
    return ray_workers.cluster_slots(), ray_workers.RayWorker


READING_SHARE = 0.25  # of --timeout: reading the table past it is said


def reading_note(data, seconds: float, timeout: float | None) -> list[str]:
    """A line where reading the table ate a good part of the budget, which counts from the start
    (a million-row CSV: 20 s of 60), and for a text file what reads faster."""
    if not timeout or seconds < READING_SHARE * timeout:
        return []
    faster = ("; a Parquet copy of it reads in a fraction of that (pandas' to_parquet)" if isinstance(data, str | Path)
              and FORMATS.get(Path(data).suffix.lower()) in ("CSV", "JSON", "JSON lines") else "")
    return [f"reading the table took {say_seconds(seconds)} of --timeout {timeout:g}s{faster}"]


def dropped_note(dropped: dict[str, str], named: int = 5) -> list[str]:
    """One line for the columns left out as holding nothing to learn from (constant, or every value
    missing in the search rows), by reason, the first `named` of each by name; they were said only
    in metadata.json."""
    if not dropped:
        return []
    reasons: dict[str, list[str]] = {}
    for name, why in dropped.items():
        reasons.setdefault(why, []).append(name)
    more = {why: f" and {len(names) - named} more" if len(names) > named else "" for why, names in reasons.items()}
    parts = [f"{why} ({', '.join(map(repr, names[:named]))}{more[why]})" for why, names in reasons.items()]
    return [f"{len(dropped)} column{'s' if len(dropped) > 1 else ''} not used: {'; '.join(parts)}"]


def sampled_note(best: FamilyResult, fold_rows: int, columns: int, task: Task) -> list[str]:
    """A line where the best trial trained each fold on a sample of its rows or on the columns most
    related to the target: a run's last chance, or a wide table's first trial (last_chance.py); where
    its settings also ran on every row and column and scored no better, that instead of the budget's say."""
    on = []
    if best.best_train_rows is not None and best.best_train_rows < fold_rows:
        on.append(f"{best.best_train_rows:,} of each fold's {fold_rows:,} training rows")
    if screens(best.best_params, columns):
        on.append(f"the {best.best_params[SCREEN]:,} of its {columns:,} columns most related to the target")
    if not on:
        return []
    trained = f"{best.family}'s best trial ({best.best_trial}) was trained on {' and on '.join(on)}"
    if best.best_whole_score is not None:
        return [f"{trained}; its settings on every row and column scored no better (CV {task.metric.label} "
                f"{task.show(best.best_whole_score)} against {task.show(best.cv_score_mean)})"]
    return [f"{trained}, as a short budget asks; trials on every row and column compete where --timeout lets "
            "them finish"]


def _storage_url(given: str | None, out: Path) -> str:
    """The storage as the record names it: a database URL as given, a journal file by its absolute
    path (the record is read from other working directories)."""
    journal = journal_path(given, out)
    return given if journal is None else str(journal.resolve())


def compare_models(opts: RunOptions, reporter: Reporter | None = None) -> RunRecord:
    """Run the whole comparison and return what was written to results.json."""
    with ExitStack() as held:  # what the run holds to its end: its journal, against a second driver
        return _compare_models(opts, reporter or SilentReporter(), held)


def _compare_models(opts: RunOptions, reporter: Reporter, held: ExitStack) -> RunRecord:
    started, run_started = time.perf_counter(), time.monotonic()
    check_options(opts)

    def check_sizes(task: Task, y: np.ndarray, k: int) -> None:
        check_split_sizes(len(y), opts.holdout, k)
        check_class_sizes(task, y, opts.holdout, k, opts.seed)

    def search_rows(task: Task, y: np.ndarray):  # the rows outside the sealed holdout decide the encoding
        check_sizes(task, y, folds_of(opts, task, y))
        return holdout_split(len(y), opts.holdout, opts.seed, task.strata(y))[0]

    reading = time.monotonic()
    table = load_table(opts.data, opts.target, opts.keep_columns, search_rows, opts.task, opts.metric,
                       opts.class_weight)
    read_seconds = time.monotonic() - reading
    if hasattr(reporter, "task_decided"):
        reporter.task_decided(table.task, table.task_line)
    elif table.task_line:
        reporter.stage(table.task_line)
    early_warnings = [f"column {name!r} is not used: {why}" for name, why in table.identifiers.items()]
    early_warnings += dropped_note(table.dropped_to_say)
    early_warnings += table.warnings + reading_note(opts.data, read_seconds, opts.timeout)
    for line in early_warnings:
        reporter.stage(line)
    slots, new_worker = _workers(opts)
    if opts.ray is None and (note := idle_gpus_note(opts.devices)):
        reporter.stage(note)
    models = opts.models or list(DEFAULT_MODELS)
    with run_dir.made_unless_refused(Path(opts.out) if opts.out else None) as out:
        held.enter_context(sole_driver(opts.storage, out))  # before anything here or in the study changes
        run_dir.clear_leftovers(out)
        for earlier in (run_dir.EXPLAIN, run_dir.REPORT):  # a rerun's explanation and report are its own, or none
            (out / earlier).unlink(missing_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)

        rest, sealed = holdout_split(table.rows, opts.holdout, opts.seed, table.task.strata(table.y))
        few = [f"the holdout has {len(sealed)} rows: its score is a rough guide, not a measure"] \
            if len(sealed) < FEW_HOLDOUT_ROWS else []
        for line in few + copies_in_holdout(table.X, table.y, rest, sealed):
            early_warnings.append(line)
            reporter.stage(line)
        storage = open_storage(opts.storage, out)
        stamped = fingerprint.stamped(storage, models, "folds")
        k = folds_of(opts, table.task, table.y, stamped)
        if opts.folds is None and stamped:  # a resumed search's own K, maybe not today's default: the table must fit
            check_sizes(table.task, table.y, k)
        folds = kfold_indices(len(rest), k, opts.seed, table.task.strata(table.y[rest]))
        search = fingerprint.of_run(table.X, table.y, table.feature_names, table.target, opts.seed, opts.holdout,
                                    k, table.task)
        fingerprint.check_resume(storage, models, search, shown(opts.storage or str(out)), opts.storage is not None)
        data = run_dir.keep_frame(opts.data, out) if isinstance(opts.data, pd.DataFrame) else Path(opts.data)
        fingerprint.stamp(storage, models, search)
        kept = held_for_rerun(storage, models)
        if kept.finished or kept.again:
            again = (f"; {kept.again} cut short or trained on a sample, to train again on every row first"
                     if kept.again else "")
            reporter.stage(f"continuing the search in {shown(opts.storage or str(out))}: {kept.finished} trial(s) "
                           f"finished there{again}")
        run_dir.write_json(out / run_dir.HOLDOUT, {"holdout_rows": sealed, "seed": opts.seed, "fraction": opts.holdout})
        out_of_fold = (OutOfFold(out, folds, running=running_trials(storage, models),
                                 told=complete_scores(storage, models))
                       if opts.ensemble or not opts.refit else None)

    reporter.stage(f"run directory: {out}")  # every check passed: from here on it trains
    budget = Budget.starting_now(run_started, opts.timeout) if opts.timeout else None
    with WorkerPool(table.X[rest], table.y[rest], folds, slots=slots, job_timeout=opts.job_timeout, scratch=out,
                    fuse=opts.fuse, predictions=out_of_fold is not None,
                    keep_models=None if opts.refit else out_of_fold.directory / MODELS, new_worker=new_worker,
                    task=table.task, categorical=table.category_columns) as pool:
        reporter.watch(pool.activity)
        if note := gpus_without_cuda_note(pool.gpu_workers_started()):  # the search waits for them anyway
            reporter.stage(note)
            early_warnings.append(note)
        for family in models:
            reporter.family_started(family, opts.trials)
        families = run_studies(models, storage, opts.trials, k, opts.seed, pool,
                               on_trial=reporter.trial_finished, budget=budget, prune=opts.prune,
                               out_of_fold=out_of_fold, portfolio=opts.portfolio, task=table.task, rows=len(rest),
                               columns=table.X.shape[1])
        for result in families.values():
            reporter.family_finished(result)
        ranking = sorted((f for f in families.values() if f.status == "ok"), key=lambda f: -f.cv_score_mean)
        if not ranking:
            reasons = "; ".join(f"{f.family}: {f.reason}" for f in families.values())
            if budget is not None and any(f.stopped_by_budget for f in families.values()):
                raise RunFailed(f"no model finished within --timeout {opts.timeout:g}s ({reasons}); rerun with a "
                                "longer --timeout (the cut trials are asked first)")
            timed_out = any(str(f.reason).startswith(TIMED_OUT) for f in families.values())
            raise RunFailed(f"every model family failed ({reasons})" + (
                "; rerun with a longer --job-timeout (the timed-out trials are asked again)" if timed_out else ""))
        best = ranking[0]
        early_warnings += sampled_note(best, len(rest) - len(rest) // k, table.X.shape[1], table.task)
        if out_of_fold is not None:  # stragglers of pruned trials; not what another driver still trains
            out_of_fold.remove_unkept(running_trials(storage, models))
        chosen = final_model.plan(best, storage, out_of_fold, table.y[rest], len(slots), budget,
                                  ensembles=opts.ensemble, refit=opts.refit, task=table.task, folds=folds,
                                  families=models)
        reporter.stage(f"{chosen.work(len(rest))} and scoring the holdout")
        final = final_model.train_and_save(pool, chosen, best, table, rest, sealed, out, opts.seed, budget)
        warnings = early_warnings + final["warnings"]
        with ThreadPoolExecutor(max_workers=1) as beside:  # the probe and the explanation at once, on two workers
            probes = [beside.submit(_diagnostics, pool, f, out, opts.seed, reporter, budget)
                      for f in families.values() if FAMILIES[f.family].diagnostics]
            explained = []
            if opts.explain:
                explained = explain_winner(pool, out, table.X[sealed], table.y[sealed], opts.seed, budget,
                                           reporter.stage)
            warnings += [w for probe in probes for w in probe.result()] + explained
        run_dir.write_json(out / run_dir.TIMELINE, {"device": describe(slots), "workers": len(slots),
                                                     "tasks": pool.timeline})

    record = RunRecord(
        data=str(data.resolve()), target=table.target, rows=table.rows, features=len(table.feature_names),
        holdout_rows=len(sealed), folds=k, seed=opts.seed, device=describe(slots), workers=len(slots),
        fuse=str(opts.fuse), precision=opts.fuse.precision, prune=opts.prune, trials_per_family=opts.trials,
        storage=_storage_url(opts.storage, out), families=families, ranking=[f.family for f in ranking],
        timeout_seconds=opts.timeout, budget_exhausted=any(f.stopped_by_budget for f in families.values()),
        winner=final["winner"], holdout_score=final["holdout_score"], ensemble=final["ensemble"], warnings=warnings,
        holdout_metrics=final["holdout_metrics"],
        seconds=time.perf_counter() - started, out=str(out.resolve()), task=table.task)
    record.write(out)
    return record


def _diagnostics(pool: WorkerPool, family: FamilyResult, out: Path, seed: int, reporter: Reporter,
                 budget: Budget | None) -> list[str]:
    """Probe the family's best trial (diagnostics.json) and return its warnings, each prefixed "<family>: ".
    Under a budget only where it fits before the report's share: it trains one fold again,
    about as long as the best trial's folds took, and stops there if it runs longer (its
    worker may first have explained the winner)."""
    if family.status != "ok":
        return []
    needs = float(np.median(family.best_fold_seconds)) if family.best_fold_seconds else 0.0
    if budget is not None and needs > budget.left():
        return [f"{family.family}: no diagnostics probe: it needs about {needs:.1f} s, "
                f"{max(0.0, budget.left()):.1f} s of the time budget left"]
    reporter.stage(f"{family.family} diagnostics: training its best config once more on fold 0")
    try:
        report = pool.diagnose(family.family, family.best_params, model_seed(seed, family.best_seeded_as),
                               budget.report_starts() if budget is not None else None)
    except Exception as exc:  # a probe that fails must not cost the run its results
        if "DeadlineReached" in str(exc):  # it ran longer than its trial's folds did
            return [f"{family.family}: no diagnostics probe: the time budget ran out while it trained"]
        return [f"{family.family}: the diagnostics probe failed: {exc}"]
    report["trial"] = family.best_trial
    run_dir.write_json(out / run_dir.DIAGNOSTICS, report)
    return [f"{family.family}: {w}" for w in report["warnings"]]
