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

import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

READY_TIMEOUT = 300.0  # importing torch and the tree libraries on a cold machine


class TrialFailed(Exception):
    """A trial's fold could not be trained; the message says why."""


class WorkerLost(Exception):
    """The worker died, hung past its timeout, or broke the protocol."""


class WorkerProcess:
    """One `trialfuse worker` subprocess and a thread that reads its stdout into a queue."""

    def __init__(self, env: dict[str, str], dataset: dict[str, Any]):
        self.env, self.dataset = env, dataset
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "trialfuse.cli", "worker"], env=self.env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        if self._next(READY_TIMEOUT).get("status") != "ready":
            raise WorkerLost("the worker did not say ready")
        self.request(self.dataset, 1, READY_TIMEOUT)

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # end of file: the worker is gone

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=None if math.isinf(timeout) else timeout)
        except queue.Empty:
            self.kill()
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        if line is None:
            raise WorkerLost(f"the worker died (exit code {self.proc.wait()})")
        try:
            return json.loads(line)
        except ValueError:
            self.kill()
            raise WorkerLost(f"the worker wrote a line that is not JSON: {line.strip()[:80]!r}") from None

    def request(self, command: dict[str, Any], answers: int, timeout: float) -> list[dict[str, Any]]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerLost("the worker's stdin is closed") from None
        return [self._next(timeout) for _ in range(answers)]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write('{"command": "shutdown"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class WorkerPool:
    """Runs trials' folds on device workers; the study's only way to train anything."""

    def __init__(self, X: np.ndarray, y: np.ndarray, folds, *, device: str = "cpu", workers: int = 1,
                 job_timeout: float | None = None, scratch: Path | None = None):
        self.device = device
        self.workers = max(1, workers)
        self.job_timeout = job_timeout or math.inf
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)
        if scratch is not None:  # a killed driver's leftovers are cleared by the next run
            Path(scratch).mkdir(parents=True, exist_ok=True)
            for stale in Path(scratch).glob(".pool-*"):
                shutil.rmtree(stale, ignore_errors=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=".pool-", dir=scratch))  # unique name: no collisions
        np.savez(self._tmp / "search_rows.npz", X=X, y=y)
        self._dataset = {"command": "load_dataset", "dataset": "search", "path": str(self._tmp / "search_rows.npz"),
                         "folds": [{"train": t.tolist(), "val": v.tolist()} for t, v in folds]}
        gpus = device.split(":", 1)[1].split(",") if device.startswith("cuda") else []
        self._idle: queue.Queue = queue.Queue()
        self._all: list[WorkerProcess] = []
        for i in range(self.workers):
            worker = WorkerProcess(self._env(gpus[i] if gpus else None), self._dataset)
            self._all.append(worker)
            self._idle.put(worker)
        self._threads = ThreadPoolExecutor(self.workers)

    def _env(self, gpu: str | None) -> dict[str, str]:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
        return env

    def run_trials(self, jobs: list[tuple[str, dict[str, Any], list[int], int]],
                   fuse: str | int = "auto") -> list[list[dict] | TrialFailed]:
        """Run several trials' folds at once: jobs are (family, params, folds, seed).

        Tree folds go one per task to whichever worker is free; the NN folds of all the
        trials go as one fused batch per worker. Returns per trial its fold results in
        fold order, or the TrialFailed that stopped it.
        """
        flat = [(t, family, params, fold, seed) for t, (family, params, folds, seed) in enumerate(jobs)
                for fold in folds]
        if jobs and jobs[0][0] == "nn":
            tasks = balanced_batches(flat, self.workers)
        else:
            tasks = [[item] for item in flat]
        answers = self._threads.map(lambda task: self._run_task(task, fuse), tasks)
        per_trial: list[list[dict]] = [[] for _ in jobs]
        failed: dict[int, str] = {}
        for task, results in zip(tasks, answers, strict=True):
            for (t, *_), result in zip(task, results, strict=True):
                if result.get("status") != "complete":
                    failed.setdefault(t, result.get("error", "unknown error"))
                elif not math.isfinite(result["r2"]):
                    failed.setdefault(t, "the model predicts non-finite values (training diverged)")
                per_trial[t].append(result)
        return [TrialFailed(failed[t]) if t in failed else sorted(r, key=lambda x: x["fold_idx"])
                for t, r in enumerate(per_trial)]

    def _command(self, task, fuse) -> dict[str, Any]:
        fuse_arg = "auto" if fuse == "auto" else False if fuse == "off" else True
        jobs = [{"dataset": "search", "fold": fold, "family": family, "params": params, "seed": seed,
                 "trial_number": t, "fold_idx": fold, "threads": self.threads}
                for t, family, params, fold, seed in task]
        return {"command": "train_batch", "jobs": jobs, "fuse": fuse_arg,
                **({"max_batch": int(fuse)} if str(fuse).isdigit() else {})}

    def _run_task(self, task, fuse) -> list[dict[str, Any]]:
        """The task's answers, after the restart-once and single-task fallback rules."""
        command = self._command(task, fuse)
        worker = self._idle.get()
        try:
            for attempt in range(2):  # first try, then once more on a restarted worker
                try:
                    return worker.request(command, len(task), self.job_timeout)
                except TimeoutError as exc:
                    return [_failure(f"timed out: {exc}") for _ in task]
                except WorkerLost as exc:
                    reason = str(exc)
                    worker.kill()
                    if attempt == 0:
                        continue
            fresh = WorkerProcess(worker.env, self._dataset)  # last resort: a worker for this task alone
            try:
                return fresh.request(command, len(task), self.job_timeout)
            except (WorkerLost, TimeoutError) as exc:
                return [_failure(f"{reason}; then in a fresh process: {exc}") for _ in task]
            finally:
                fresh.close()
                fresh.kill()
        finally:
            self._idle.put(worker)

    def retrain(self, family: str, params: dict[str, Any], rounds: int | None, X_score: np.ndarray,
                directory: Path, seed: int) -> dict[str, Any]:
        """Train on all search rows, save to `directory`, and predict X_score with the saved model."""
        score_path = self._tmp / "score_rows.npz"
        np.savez(score_path, X=X_score)
        command = {"command": "retrain", "dataset": "search", "family": family, "params": params,
                   "rounds": rounds, "directory": str(directory), "score_path": str(score_path), "seed": seed,
                   "threads": (os.cpu_count() or 1)}
        worker = self._idle.get()
        try:
            answer = worker.request(command, 1, math.inf)[0]
        finally:
            self._idle.put(worker)
        if answer.get("status") != "complete":
            raise RuntimeError(f"retraining {family} failed: {answer.get('error')}")
        return answer

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        for worker in self._all:
            worker.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def nn_cost(params: dict[str, Any]) -> float:
    """Relative cost of training one MLP: epoch budget x multiply-adds per row."""
    widths = list(params.get("hidden_layers", [128, 64]))
    return float(params.get("epochs", 100)) * sum(a * b for a, b in zip([64, *widths], [*widths, 1], strict=False))


def balanced_batches(items: list[tuple], workers: int) -> list[list[tuple]]:
    """Split NN fold jobs into one batch per worker with about equal cost (largest first onto
    the least loaded), so no worker idles while another finishes a heavy model."""
    loads = [0.0] * workers
    batches: list[list[tuple]] = [[] for _ in range(workers)]
    for item in sorted(items, key=lambda it: -nn_cost(it[2])):
        target = loads.index(min(loads))
        batches[target].append(item)
        loads[target] += nn_cost(item[2])
    return [b for b in batches if b]


def _failure(reason: str) -> dict[str, Any]:
    return {"status": "error", "error": reason}
