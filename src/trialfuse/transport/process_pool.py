"""The driver's side of the device workers: start them, feed them folds, survive their faults.

One `trialfuse worker` process per GPU (pinned with CUDA_VISIBLE_DEVICES), or several
sharing the CPU cores. Each loads the search rows once (an NPZ in a private temporary
directory, removed at close) and then trains folds by index. The rules, kept from the
source system and tightened:
- a worker that dies or writes a line that is not JSON is restarted once and its task
  re-run; if that fails too, the task runs in a fresh single-task worker;
- a task past its timeout gets its worker killed and its trials failed with the reason;
- every trial gets exactly one outcome, and no worker outlives the pool.
The driver never imports torch: it only speaks JSON lines.
"""
from __future__ import annotations

import contextlib
import math
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trialfuse.catalog import FAMILIES
from trialfuse.fuse import AUTO, Fuse
from trialfuse.task import NUMBERS, Task
from trialfuse.transport import protocol, side_jobs
from trialfuse.transport.contracts import (
    READY_TIMEOUT,
    SlotGone,
    Worker,
    WorkerFactory,
    WorkerLost,
    request_with_restart,
)
from trialfuse.transport.fold_queue import FoldDone, FoldJob, TrialKey, describe, take_task
from trialfuse.transport.placement import Slot, WorkerKind, device_for, first_choice, usable_cores
from trialfuse.transport.placement import window as placement_window
from trialfuse.transport.scratch import make_scratch, request_stop, stop_file
from trialfuse.transport.side_jobs import Retrain
from trialfuse.transport.worker_process import WorkerProcess, worker_env

WORKER_LOGS = "worker-logs"  # under the run directory: each worker's stderr, so a crash's cause survives


class WorkerPool:
    """Runs trials' folds on device workers; the study's only way to train anything (a
    `contracts.FoldPool`; `side_jobs` retrains, probes and explains on the same workers).

    The study submits fold jobs, releases them with `dispatch`, and reads `FoldDone`
    events as they arrive. Each worker has a thread that takes work whenever its worker is
    free: one fold for most families, several folds of the NN together where they train as
    one fused model (a GPU, or `--fuse on`).

    Queue order (`FoldJob.queue_key`), positions counted per family so families searched at
    once take turns (or turns the scheduler gives, in compute-seconds, when it shares the
    workers by cost), the cheapest family first among equals:
    - a trial the pruner can judge is diagonal: a fold waits behind the folds two places
      earlier of the next two trials (trial position + 2 x fold), so a losing trial's first
      folds come back before its later ones start, while the oldest trial still finishes
      first and its successor can be asked while the others run;
    - a trial it cannot (the first ones of a study, or `--no-prune`) gains nothing from
      that, so its folds run together, oldest trial first: under a short budget every
      family finishes whole trials instead of holding many half-trained ones;
    - from `hurry_at` on (time.time(), set by the scheduler near a deadline), folds of trials
      already under way go before any fold of a trial not yet started: a trial finished
      counts, two half-trained ones cut by the deadline do not.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, folds, *, slots: list[Slot] | None = None,
                 job_timeout: float | None = None, scratch: Path | None = None, fuse: Fuse = AUTO,
                 deadline: float | None = None, predictions: bool = False, keep_models: Path | None = None,
                 new_worker: WorkerFactory | None = None, task: Task = NUMBERS, categorical: list[int] = ()):
        self.slots = slots or [Slot(WorkerKind.CPU, "", usable_cores())]
        self.job_timeout = job_timeout or math.inf
        self._windows: dict[str, int] = {}  # each family's trials in flight, once asked (see window)
        self._devices: dict[str, WorkerKind] = {}  # each family's kind of worker, once every worker started
        self.fuse = fuse
        self.deadline = deadline  # time.time() at which every job stops (the run's search budget)
        self.predictions = predictions  # answers carry each fold's validation predictions (for ensembles)
        self.keep_models = keep_models  # folds keep their models under <it>/<family>-<trial>/fold-<k>/
        self.hurry_at: float | None = None  # time.time() from which trials under way go first
        # trial -> {running fold: time.time() a worker took it}; a trial is under way once it is a key
        self._running: dict[TrialKey, dict[int, float]] = {}
        self._cancelled: set[TrialKey] = set()  # trials the scheduler dropped: a given-back fold of one is not re-run
        self._tmp = make_scratch(None if scratch is None else Path(scratch))
        np.savez(self._tmp / "search_rows.npz", X=X, y=y, categorical=np.asarray(categorical, dtype=np.int64))
        self._shape, self._folds = X.shape, len(folds)
        self._dataset = protocol.load_dataset(str(self._tmp / "search_rows.npz"), folds, task=task)
        self._staged: list[FoldJob] = []
        self._pending: list[FoldJob] = []
        self._trials_submitted: dict[str, int] = {}  # trials submitted so far, per family
        self._waiting = dict.fromkeys(WorkerKind, 0)  # worker threads with nothing to do, by kind
        self._closed = False
        self._ready = threading.Condition()
        self._done: queue.Queue[FoldDone] = queue.Queue()
        self.timeline: list[dict[str, Any]] = []  # every task a worker ran: for the report's device timeline
        logs = Path(scratch) / WORKER_LOGS if scratch is not None else self._tmp
        logs.mkdir(parents=True, exist_ok=True)
        self._new_worker: WorkerFactory = new_worker or WorkerProcess  # a process per worker, or a Ray actor
        self._all = [self._new_worker(worker_env(slot), self._dataset, slot, logs / f"worker-{i}.log")
                     for i, slot in enumerate(self.slots)]
        self._doing = ["starting"] * len(self._all)  # what each worker is at, for the progress display
        for worker in self._all:
            threading.Thread(target=self._serve, args=(worker,), daemon=True).start()

    def submit(self, trial: TrialKey, params: dict[str, Any], folds: list[int], seed: int,
               diagonal: bool = True, turn: float | None = None, step: float = 1.0,
               train_rows: int | None = None) -> None:
        """Queue a trial's folds until `dispatch` (a round of asks goes out together). `diagonal`:
        it may be pruned after a fold; `turn`, `step`: its place when the scheduler shares the
        workers by cost (see the class); `train_rows`: a fold's training rows at most."""
        trial = TrialKey(*trial)
        with self._ready:
            position = self._trials_submitted.setdefault(trial.family, 0)
            rank = FAMILIES[trial.family].cost
            self._staged += [FoldJob(trial, params, fold, seed, position, rank, diagonal, turn, step, train_rows)
                             for fold in folds]
            self._trials_submitted[trial.family] += 1

    def dispatch(self) -> None:
        with self._ready:
            if self._staged:
                self._pending.extend(self._staged)
                self._staged.clear()
                self._pending.sort(key=FoldJob.queue_key)
                self._ready.notify_all()
            self._fail_if_no_worker_is_left()

    def _fail_if_no_worker_is_left(self) -> None:
        """With every worker's place gone (and the pool not closed), each queued job is answered
        with that error at once, so no trial waits for a worker that will never come."""
        if self._closed or not all(worker.retired for worker in self._all):
            return
        orphans, self._pending = self._pending, []
        for job in orphans:
            self._done.put(FoldDone(job, protocol.error("every worker's place is gone")))

    def cancel(self, trial: TrialKey, stop_running: bool = True) -> int:
        """Drop the trial's unstarted folds and, with `stop_running`, ask its running folds to stop
        (scratch.request_stop: a fold answers `cut`, a fused NN task once all its trials are told to;
        CatBoost on a GPU cannot); how many were dropped."""
        with self._ready:
            self._cancelled.add(trial)
            before = len(self._pending) + len(self._staged)
            self._pending = [job for job in self._pending if job.trial != trial]
            self._staged = [job for job in self._staged if job.trial != trial]
            if stop_running and self._running.get(trial):
                request_stop(self._tmp, *trial)
            return before - len(self._pending) - len(self._staged)

    def progress(self, trial: TrialKey) -> tuple[int, list[float]]:
        """(folds of the trial still queued, seconds each of its running folds has run so far)."""
        with self._ready:
            queued = sum(job.trial == trial for job in (*self._pending, *self._staged))
            now = time.time()
            return queued, [now - taken for taken in self._running.get(trial, {}).values()]

    def next_done(self, timeout: float | None = None) -> FoldDone | None:
        """The next fold answer, or None if none came within `timeout` seconds."""
        try:
            return self._done.get(timeout=timeout)
        except queue.Empty:
            return None

    def _accepts(self, worker: Worker) -> Callable[[str], bool]:
        return lambda family: worker.slot.kind == self._device_for(family)

    def _device_for(self, family: str) -> WorkerKind:
        """The kind of worker that trains `family` (placement.device_for), fixed once every GPU
        worker has said what it can do: the queue asks it for every job at every take."""
        if family in self._devices:
            device = self._devices[family]
        else:
            device = device_for(family, self.slots, [w.ready for w in self._all], self._shape[0])
            if all(w.tried.is_set() for w in self._all if w.slot.kind == WorkerKind.GPU):
                self._devices[family] = device
        if not any(w.slot.kind == device and not w.retired for w in self._all):  # every one of them is gone
            return next((w.slot.kind for w in self._all if not w.retired), device)
        return device

    def _take(self, worker: Worker) -> list[FoldJob]:
        """Work for one free worker (called holding the lock): [] if nothing queued is for it."""
        slot = worker.slot
        # NN folds go to a worker together only where they train as one fused model; on a CPU
        # they train one at a time anyway, and one fold per task lets trees interleave and a
        # deadline or a pruned trial free the worker sooner
        fuses = self.fuse.mode == "on" or (self.fuse.mode == "auto" and slot.kind == WorkerKind.GPU)
        idle_others = self._waiting[slot.kind] - 1
        task, self._pending = take_task(self._pending, idle_others, fuses, self._jobs_per_task,
                                        self._accepts(worker), first_choice(slot),
                                        self._running if self._hurry() else None)
        now = time.time()
        for job in task:
            self._running.setdefault(job.trial, {})[job.fold] = now
        return task

    def _hurry(self) -> bool:
        return self.hurry_at is not None and time.time() >= self.hurry_at

    def _serve(self, worker: Worker) -> None:
        index = self._all.index(worker)
        with contextlib.suppress(Exception):  # its ready line says what it can run; a worker that
            with worker.busy:  # fails to start is started again by its first task
                try:
                    worker.start()
                finally:
                    worker.tried.set()
        try:
            self._serve_tasks(worker, index)
        finally:
            worker.retired = True
            worker.kill()  # this thread is the worker's only user: it never outlives it

    def _serve_tasks(self, worker: Worker, index: int) -> None:
        while True:
            self._doing[index] = "idle"
            with self._ready:
                self._waiting[worker.slot.kind] += 1
                task = []
                while not self._closed and not (task := self._take(worker)):
                    self._ready.wait()
                self._waiting[worker.slot.kind] -= 1
                if self._closed:
                    self._pending.extend(task)
                    return
            self._doing[index] = describe(task)
            with worker.busy:
                started = time.time()
                try:
                    answers = self._run_task(worker, task)
                except SlotGone:
                    self._give_back(task, worker)
                    return
                self.timeline.append({"worker": index, "device": worker.slot.label,
                                      "what": task[0].family, "start": started, "end": time.time(),
                                      "jobs": len(task)})
            with self._ready:
                for job in task:
                    self._running.get(job.trial, {}).pop(job.fold, None)
            for job, answer in zip(task, answers, strict=True):
                self._done.put(FoldDone(job, answer))

    def _give_back(self, task: list[FoldJob], gone: Worker) -> None:
        """A worker whose place is gone: its task goes back to the queue for the others, and
        the pool runs on with fewer workers; with none left, every job queued fails."""
        gone.retired = True
        with self._ready:
            for job in task:
                self._running.get(job.trial, {}).pop(job.fold, None)
            self._pending[:0] = [job for job in task if job.trial not in self._cancelled]
            self._ready.notify_all()  # the others take it (a family whose kind is all gone moves kind)
            self._fail_if_no_worker_is_left()

    def window(self, family: str, trials: int | None = None) -> int:
        """Trials of `family` worth keeping in flight on this pool, out of `trials` if the run has a
        count (placement.window); reads the GPU workers' ready lines (free memory, a CUDA LightGBM)."""
        self.gpu_workers_started()
        rows, features = self._shape
        fused = self.fuse.mode != "off"
        self._windows[family] = placement_window(family, self.slots, [w.ready for w in self._all], self._folds,
                                                 rows, features, fused, trials)
        return self._windows[family]

    def _jobs_per_task(self, family: str) -> int:
        """Folds of a batched family (the fused NN) one worker task trains together: about
        two tasks per worker that takes it for the trials in flight, so a worker that finishes
        early finds the next task waiting (at least one trial's folds)."""
        takers = sum(self._accepts(worker)(family) for worker in self._all) or 1
        in_flight = self._windows.get(family, FAMILIES[family].in_flight)
        return max(self._folds, math.ceil(in_flight * self._folds / (2 * takers)))

    def activity(self) -> list[tuple[str, str]]:
        """(device, what its worker is doing) for each worker: the progress display's rows."""
        return [(worker.slot.label, doing) for worker, doing in zip(self._all, self._doing, strict=True)]

    def _command(self, task: list[FoldJob], threads: int) -> dict[str, Any]:
        return protocol.train_batch([protocol.TrainJob(job.family, job.params, job.fold, job.seed,
                                                       job.trial.number, threads, deadline=self.deadline,
                                                       predictions=self.predictions or None,
                                                       save_dir=self._fold_model_dir(job),
                                                       stop_file=str(stop_file(self._tmp, *job.trial)),
                                                       train_rows=job.train_rows)
                                    for job in task],
                                    self.fuse)

    def _fold_model_dir(self, job: FoldJob) -> str | None:
        """Where a fold's model is kept, if the run serves models as their folds' mean."""
        if self.keep_models is None:
            return None
        return str(Path(self.keep_models) / f"{job.family}-{job.trial.number}" / f"fold-{job.fold}")

    def _run_task(self, worker: Worker, task: list[FoldJob]) -> list[dict[str, Any]]:
        """The task's answers, after the restart-once rule and, that failing too, one try in a
        fresh single-task worker; any other failure (e.g. no process can be started) is an
        error answer per job, so every job is answered and the worker's thread lives on.
        SlotGone goes to the caller: the task goes back to the queue."""
        command = self._command(task, worker.slot.threads)
        try:
            return request_with_restart(worker, command, len(task), self.job_timeout, lambda: self._closed)
        except TimeoutError as exc:
            return [protocol.error(f"{protocol.TIMED_OUT}: {exc}") for _ in task]
        except WorkerLost as exc:
            reason = str(exc)
        except SlotGone:
            raise
        except Exception as exc:
            return [protocol.error(f"{type(exc).__name__}: {exc}") for _ in task]
        if self._closed:
            return [protocol.error("the pool closed") for _ in task]
        fresh = self._new_worker(worker.env, self._dataset, worker.slot, worker.log)  # last resort: this task alone
        try:
            return fresh.request(command, len(task), self.job_timeout)
        except (WorkerLost, TimeoutError) as exc:
            return [protocol.error(f"{reason}; then in a fresh process: {exc}") for _ in task]
        except SlotGone:
            raise
        except Exception as exc:
            return [protocol.error(f"{type(exc).__name__}: {exc}") for _ in task]
        finally:
            fresh.close()
            fresh.kill()

    def retrain(self, models: list[Retrain], X_score: np.ndarray) -> list[dict[str, Any]]:
        return side_jobs.retrain(self, models, X_score)

    def diagnose(self, family: str, params: dict[str, Any], seed: int, deadline: float | None = None) -> dict[str, Any]:
        return side_jobs.diagnose(self, family, params, seed, deadline)

    def explain(self, model_dir: Path, X: np.ndarray, y: np.ndarray, seed: int,
                deadline: float | None = None) -> dict[str, Any]:
        return side_jobs.explain(self, model_dir, X, y, seed, deadline)

    @property
    def scratch(self) -> Path:
        """The pool's private folder: rows the workers read are written here."""
        return self._tmp

    def takes(self, worker: Worker, family: str) -> bool:
        """Whether `worker` trains `family` (its kind is the family's, see _device_for)."""
        return self._accepts(worker)(family)

    @property
    def workers(self) -> int:
        """Workers whose place is not gone: what the scheduler's time estimates share folds over."""
        return sum(not w.retired for w in self._all) or len(self._all)

    def gpu_workers_started(self) -> list[Worker]:
        """The GPU workers, once each has tried to start: their ready lines say what they found."""
        gpus = [w for w in self._all if w.slot.kind == WorkerKind.GPU]
        for worker in gpus:
            worker.tried.wait(READY_TIMEOUT)
        return gpus

    def live_workers(self) -> list[Worker]:
        """The workers whose place is not gone (all of them, if every one is)."""
        return [w for w in self._all if not w.retired] or self._all

    def run_on(self, worker: Worker, what: str, family: str, command: dict[str, Any]) -> dict[str, Any]:
        """One command on `worker`, outside the queue, logged on the timeline; under the job
        timeout (twice it for a retrain, which trains on every search row) and the restart-once
        rule, as a task is. SlotGone goes to the caller."""
        index = self._all.index(worker)
        self._doing[index] = f"{what} {family}"
        limit = self.job_timeout * (2 if what == "retrain" else 1)
        with worker.busy:
            started = time.time()
            try:
                answer = request_with_restart(worker, command, 1, limit, lambda: self._closed)[0]
            except TimeoutError as exc:
                answer = protocol.error(f"{protocol.TIMED_OUT}: {exc}")
            except WorkerLost as exc:
                answer = protocol.error(str(exc))
            self.timeline.append({"worker": index, "device": worker.slot.label, "what": what,
                                  "start": started, "end": time.time(), "jobs": 1})
        self._doing[index] = "idle"
        return answer

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._pending.clear()
            self._ready.notify_all()
        for worker in self._all:
            worker.retired = True  # a task still running (a pruned trial's fold) is not waited for
            if worker.busy.locked():
                worker.kill()
            else:
                worker.close()
        self._new_worker.release(self._dataset)  # e.g. the search rows in Ray's object store
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
