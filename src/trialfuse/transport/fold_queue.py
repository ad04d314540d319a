"""The folds waiting for a worker: their order, and what one free worker takes next.

Positions are counted per family, so families searched at once take turns (or take the
turns the scheduler gives, in compute-seconds, when it shares the workers by cost), the
cheapest family first among equals (see `FoldJob.queue_key` and `WorkerPool`)."""
from __future__ import annotations

import math
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, NamedTuple

from trialfuse.catalog import FAMILIES, GpuUse

FOLD_STRIDE = 2  # queue priority: trial position + FOLD_STRIDE x fold (see WorkerPool)


class TrialKey(NamedTuple):
    """A trial across the families searched at once: numbers restart in each family's study."""

    family: str
    number: int


@dataclass
class FoldJob:
    """One fold of one trial, waiting for a worker."""

    trial: TrialKey
    params: dict[str, Any]
    fold: int
    seed: int
    position: int = 0  # the trial's place in its family's submission order
    family_rank: int = 0  # its family's place in the queue among trials of the same rank (cheapest first)
    diagonal: bool = True  # the trial may be pruned after a fold: spread its folds out (see WorkerPool)
    turn: float | None = None  # its place among every family's trials, if the scheduler shares by cost
    step: float = 1.0  # how far its family's turns advance per trial, on the same scale
    train_rows: int | None = None  # trained on at most this many of the fold's training rows

    @property
    def family(self) -> str:
        return self.trial.family

    def queue_key(self) -> tuple[float, int, float, int]:
        base = self.position if self.turn is None else self.turn
        rank = base + FOLD_STRIDE * self.step * self.fold if self.diagonal else base
        return rank, self.family_rank, base, self.fold


@dataclass
class FoldDone:
    """A fold's answer from its worker, or {"status": "error", "error": reason}."""

    job: FoldJob
    result: dict[str, Any]


def take_task(pending: list[FoldJob], idle_others: int, fuses: bool, per_task: Callable[[str], int],
              accepts: Callable[[str], bool] = lambda family: True,
              first_choice: GpuUse | None = None,
              under_way: Container[TrialKey] | None = None) -> tuple[list[FoldJob], list[FoldJob]]:
    """(what one free worker trains next, what stays queued), from a queue in `queue_key` order.

    The first job the worker `accepts` (one of a family whose GPU use is `first_choice`, if
    any waits; with `under_way` given, one of those trials' if any waits);
    alone, unless its family is batched and `fuses` (its folds train as one fused model):
    then up to `per_task(family)` queued jobs of that family, leaving a share for the `idle_others`
    workers like it also waiting."""
    mine = [job for job in pending if accepts(job.family)]
    if under_way is not None:
        mine.sort(key=lambda job: job.trial not in under_way)  # stable: queue order within each part
    preferred = [job for job in mine if FAMILIES[job.family].gpu is first_choice]
    if not mine:
        return [], pending
    first = (preferred or mine)[0]
    family = first.family
    if not (FAMILIES[family].batched and fuses):
        return [first], [job for job in pending if job is not first]
    same = [job for job in mine if job.family == family]  # one task trains one family (under way first)
    task = same[:min(per_task(family), math.ceil(len(same) / (idle_others + 1)))]
    taken = {id(job) for job in task}
    return task, [job for job in pending if id(job) not in taken]


def describe(task: list[FoldJob]) -> str:
    """e.g. "lightgbm trial 4 fold 2" or "nn 10 folds of 3 trials"."""
    job = task[0]
    if len(task) == 1:
        return f"{job.family} trial {job.trial.number} fold {job.fold}"
    return f"{job.family} {len(task)} folds of {len({j.trial for j in task})} trials"

