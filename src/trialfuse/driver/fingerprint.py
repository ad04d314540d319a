"""What a search's trials depend on, stored with each family's study, so that a rerun into
the same `--out` or `--storage` continues only the same search.

A resumed search with another seed would draw another holdout, overlapping rows the old
trials were tuned on, and its holdout score would flatter; another table, target, task (its
kind, metric and class weights: a trial's value is in the metric), fold count or search
space would mix trials that answer different questions. So a study keeps the
fingerprint it was started with, and a run whose fingerprint differs is refused before
anything trains, with one line naming what differs.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import optuna

from trialfuse.errors import UserError
from trialfuse.task import NUMBERS, Task

ATTR = "fingerprint"
SPACE_VERSION = 5  # raise when a family's search space or its parameters' meaning changes


# what a study stamped before a key existed searched (every model trained on its kind's one objective)
UNSTAMPED = {"task": "regression/r2/none", "objectives": "squared error"}
# the table's key is a hash of its encoded rows: the same file encoded by another version (one
# that reads a date column as features, say) differs too; a search space of another version
# cannot be continued at all: the line says so
OPTIONS = {"seed": "--seed", "folds": "--folds", "holdout": "--holdout", "target": "--target",  # what a user set
           "objectives": "model objective"}
WHY = {"table": ": its rows differ, or how this version of trialfuse encodes them",
       "space": ": this version searches or codes them differently, and no option brings the old back",
       "objectives": ": this version's models train on these under --metric mae or for a count target, and no option "
                     "brings the old back"}


def of_run(X: np.ndarray, y: np.ndarray, feature_names: list[str], target: str, seed: int, holdout: float,
           folds: int, task: Task = NUMBERS) -> dict[str, Any]:
    """The run's inputs that decide which rows each trial trains and scores on, and what it searches."""
    content = hashlib.sha256()
    content.update("\0".join(feature_names).encode())
    content.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    content.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    found = {"table": content.hexdigest()[:16], "target": target, "seed": seed, "holdout": holdout, "folds": folds,
             "space": SPACE_VERSION, "task": f"{task.kind}/{task.metric_name}/{task.class_weight}"}
    if task.objectives:  # a search of several (MAE's, a count's): a study whose models trained on one is another
        found["objectives"] = " or ".join(task.objectives)
    return found


def check_resume(storage: optuna.storages.BaseStorage, families: list[str], fingerprint: dict[str, Any],
                 where: str, storage_given: bool = False) -> None:
    """Refuse (UserError, exit 2) when a family's study in `storage` was started by another search;
    `storage_given`: it is --storage's, where a new --out starts nothing fresh."""
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name not in families:
            continue
        saved = summary.user_attrs.get(ATTR)
        if saved is None and summary.n_trials == 0:
            continue
        if saved is None:
            raise UserError(f"{where} holds {summary.study_name} trials without a fingerprint (an older trialfuse): "
                            "they cannot be checked against this run; use a new --out or --storage")
        differ = [f"{name} {then!r} (now {now!r}{WHY.get(key, '')})" for key, value in fingerprint.items()
                  for name, then, now in _named(key, saved.get(key, UNSTAMPED.get(key)), value) if then != now]
        if differ:
            fresh = "a new --storage" if storage_given else "a new --out or --storage"
            raise UserError(f"{where} holds the {summary.study_name} family's search made with another "
                            f"{', '.join(differ)}: rerun with the same options to continue it, "
                            f"or use {fresh} to start fresh")


def _named(key: str, then: Any, now: Any) -> list[tuple[str, Any, Any]]:
    """A fingerprint's key as the option that sets it, with its two values; the task's three
    parts apart ("--metric 'log_loss' (now 'accuracy')", not "task 'binary/log_loss/none' ...")."""
    if key == "task":
        return list(zip(("task", "--metric", "--class-weight"), str(then).split("/"), str(now).split("/"),
                        strict=True))
    return [(OPTIONS.get(key, key), then, now)]


def stamped(storage: optuna.storages.BaseStorage, families: list[str], key: str) -> Any | None:
    """What a study of these families already in `storage` was started with for `key` (None: none is)."""
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name in families and ATTR in summary.user_attrs:
            return summary.user_attrs[ATTR].get(key)
    return None


def stamp(storage: optuna.storages.BaseStorage, families: list[str], fingerprint: dict[str, Any]) -> None:
    """Create each family's study if new and give it the run's fingerprint (kept if already there)."""
    for family in families:
        study = optuna.create_study(study_name=family, storage=storage, direction="maximize", load_if_exists=True)
        if ATTR not in study.user_attrs:
            study.set_user_attr(ATTR, fingerprint)
