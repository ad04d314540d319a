"""The two contracts of the transport: what the pool asks of a worker, what the scheduler asks of a pool.

Written down as Protocols, each method saying what it promises and what it raises (Optuna's
`BaseStorage` is the model), so a worker on a new host (a subprocess, a Ray actor) and a
test's fake pool are held to one text rather than to whatever the other side happens to
read. The restart-once rule that every command on a worker obeys lives here too, once.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trialfuse.transport.fold_queue import FoldDone, TrialKey
from trialfuse.transport.placement import Slot

READY_TIMEOUT = 300.0  # importing torch and the tree libraries on a cold machine


class WorkerLost(Exception):
    """The worker died, hung past its timeout, or broke the protocol."""


class SlotGone(Exception):
    """The worker's place is gone for good (its cluster node died): no worker starts there
    again, and the task it held goes back to the queue for the others. Not a WorkerLost, so
    the restart-once rule never tries to start it again."""


@runtime_checkable
class Worker(Protocol):
    """One device worker: it loads the search rows once, then answers JSON commands.

    The pool reads and sets these; one thread of the pool is a worker's only user, and it
    holds `busy` while a command runs (so `close` knows whether to wait or kill).
    """

    slot: Slot  # where it runs: its device kind, the GPU it sees, its threads, its node
    env: dict[str, str]  # with `dataset` and `log`: what a fresh worker for the same place is made from
    dataset: dict[str, Any]  # the load command: the search rows and their folds
    log: Path | None  # its stderr, kept so a crash's cause survives
    ready: dict[str, Any]  # its ready line (device, free memory, what its libraries can do); {} before
    tried: threading.Event  # set once its first start succeeded or failed
    busy: threading.Lock
    retired: bool  # never start again: the pool closed, or its place is gone

    def start(self) -> None:
        """Start it and load the search rows. Raises WorkerLost if it cannot (nothing is left
        running), SlotGone if its place is gone for good."""

    def request(self, command: dict[str, Any], answers: int, timeout: float) -> list[dict[str, Any]]:
        """Send `command` (starting the worker first if it is not running) and return its
        `answers` replies in order. Raises TimeoutError, having killed it, if a reply does not
        come within `timeout` seconds; WorkerLost if it died or wrote something that is not
        the protocol (it is then not to be trusted with more); SlotGone as `start`."""

    def kill(self) -> None:
        """Stop it now, whatever it is doing; a no-op if it is not running."""

    def close(self) -> None:
        """Ask it to shut down, and kill it if it does not within seconds."""


@runtime_checkable
class WorkerFactory(Protocol):
    """Makes workers for a pool (the `WorkerProcess` class, or Ray's) and frees what they share."""

    def __call__(self, env: dict[str, str], dataset: dict[str, Any], slot: Slot, log: Path | None) -> Worker:
        """A worker for `slot`, not started yet: its first start or request starts it."""

    def release(self, dataset: dict[str, Any]) -> None:
        """The pool closed: free what `dataset` holds on this host (e.g. rows in an object store)."""


def request_with_restart(worker: Worker, command: dict[str, Any], answers: int, timeout: float,
                         closed: Callable[[], bool]) -> list[dict[str, Any]]:
    """The restart-once rule: `command` on `worker`, and once more on it started afresh if it
    was lost (unless the pool has closed meanwhile). A timeout is not retried, the job is too
    slow rather than unlucky: TimeoutError, WorkerLost after the second loss, and SlotGone go
    to the caller, who decides what the job's answer is."""
    for attempt in range(2):
        try:
            return worker.request(command, answers, timeout)
        except WorkerLost:
            worker.kill()
            if attempt == 1 or closed():
                raise
    raise AssertionError("unreachable")


@runtime_checkable
class FoldPool(Protocol):
    """What the scheduler asks of a pool: it queues trials' folds and reads their answers.

    Every fold submitted is answered exactly once through `next_done` (an error answer if it
    could not run), unless `cancel` dropped it first; the pool never decides a trial's outcome.
    """

    deadline: float | None  # time.time() by which every job stops (the search budget); set by the scheduler
    hurry_at: float | None  # time.time() from which folds of trials under way go first
    keep_models: Path | None  # fold models are kept under it (the saved model is their mean), or None

    @property
    def workers(self) -> int:
        """Workers whose place is not gone: what time estimates share folds over."""

    def submit(self, trial: TrialKey, params: dict[str, Any], folds: list[int], seed: int,
               diagonal: bool = True, turn: float | None = None, step: float = 1.0,
               train_rows: int | None = None) -> None:
        """Queue a trial's folds; they wait for `dispatch`, so a round of asks goes out together;
        `train_rows`: each fold trains on at most that many of its training rows."""

    def dispatch(self) -> None:
        """Release what was submitted to the workers."""

    def window(self, family: str, trials: int | None = None) -> int:
        """Trials of `family` worth keeping in flight on this pool (of `trials`, if counted)."""

    def next_done(self, timeout: float | None = None) -> FoldDone | None:
        """The next fold's answer, or None if none came within `timeout` seconds."""

    def cancel(self, trial: TrialKey, stop_running: bool = True) -> int:
        """Drop the trial's folds no worker has started and, with `stop_running` and where the
        workers can be told, ask its running ones to stop (they answer `cut`); how many folds
        were dropped."""

    def progress(self, trial: TrialKey) -> tuple[int, list[float]]:
        """(folds of the trial still queued, seconds each of its running folds has run so far)."""
