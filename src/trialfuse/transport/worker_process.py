"""One `trialfuse worker` subprocess, spoken to in JSON lines: start it, ask, read, stop.

The pool (`process_pool.WorkerPool`) decides what a worker trains and what to do when it
fails; this is only the process and its pipes. A death, or a line that is not a JSON object
(the worker is then killed: it cannot be trusted), raises `WorkerLost`; no answer within the
timeout kills it and raises `TimeoutError` (the pool fails that task instead of retrying it)."""
from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from trialfuse.transport import protocol
from trialfuse.transport.contracts import READY_TIMEOUT, WorkerLost
from trialfuse.transport.placement import Slot, WorkerKind


class WorkerProcess:
    """One `trialfuse worker` subprocess and a thread that reads its stdout into a queue
    (a `contracts.Worker`; the class itself is the pool's `contracts.WorkerFactory`)."""

    def __init__(self, env: dict[str, str], dataset: dict[str, Any], slot: Slot | None = None,
                 log: Path | None = None):
        self.env, self.dataset, self.log = env, dataset, log
        self.slot = slot or Slot(WorkerKind.CPU)
        self.ready: dict[str, Any] = {}  # its ready line: device and what its libraries can do
        self.tried = threading.Event()  # set once its first start succeeded or failed
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.busy = threading.Lock()  # held while a task or a retrain runs on this worker
        self.retired = False  # set when the pool closes: never start again

    def start(self) -> None:
        if self.retired:
            raise WorkerLost("the pool is closed")
        self._close_stdin()  # a restart: the dead process's pipe
        stderr = open(self.log, "a") if self.log else subprocess.DEVNULL  # the child keeps its own copy
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "trialfuse", "worker"], env=self.env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        finally:
            if self.log:
                stderr.close()
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        try:
            if self.retired:  # the pool closed while this process started
                raise WorkerLost("the pool is closed")
            self.ready = self._next(READY_TIMEOUT)
            if self.ready.get("status") != protocol.READY:
                raise WorkerLost("the worker did not say ready")
            loaded = self.request(self.dataset, 1, READY_TIMEOUT)[0]
            if loaded.get("status") != "loaded":
                raise WorkerLost(f"the worker could not load the search rows: {loaded.get('error')}")
        except BaseException:
            self.kill()  # a half-started worker never serves a task
            raise

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        with proc.stdout:  # closed at the end of file (a ResourceWarning per worker otherwise)
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
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):  # not the protocol: the worker cannot be trusted with more
            self.kill()
            raise WorkerLost(f"the worker wrote a line that is not a JSON object: {line.strip()[:80]!r}")
        return answer

    def request(self, command: dict[str, Any], answers: int, timeout: float) -> list[dict[str, Any]]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # a broken pipe, or one this side closed (kill, at the same time)
            raise WorkerLost("the worker's stdin is closed") from None
        return [self._next(timeout) for _ in range(answers)]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_stdin()

    def _close_stdin(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError, ValueError):  # a pipe the worker's end already broke, or
                self.proc.stdin.close()  # one a kill on the pool's thread is closing at the same time

    @staticmethod
    def release(dataset: dict[str, Any]) -> None:
        """Nothing to free: each process loaded the rows from the pool's scratch folder."""

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._close_stdin()
            return
        try:
            self.proc.stdin.write(json.dumps(protocol.shutdown()) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
            self._close_stdin()
        except (OSError, ValueError, subprocess.TimeoutExpired):  # ValueError: a kill closed its stdin meanwhile
            self.kill()


def worker_env(slot: Slot) -> dict[str, str]:
    """The worker's environment: its threads and the GPU it sees (none for a CPU worker)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(slot.threads), "MKL_NUM_THREADS": str(slot.threads)}
    env["CUDA_VISIBLE_DEVICES"] = slot.visible
    return env
