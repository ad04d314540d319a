"""`trialfuse worker`: a long-lived device worker speaking JSON lines on stdin/stdout.

It imports torch and initializes the device once, says {"status": "ready"}, then answers
each command line with one line per result (see `worker_engine`). Logs go to stderr, and
so does anything a library prints while a job runs, so stdout carries only protocol lines.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

from trialfuse.worker_engine import WorkerEngine


def serve(stdin=None, stdout=None) -> int:
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    _exit_with_parent()
    engine = WorkerEngine()

    def say(payload: dict) -> None:
        out.write(json.dumps(payload, default=float) + "\n")
        out.flush()

    say({"status": "ready", "device": engine.device})
    for line in stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("a command is a JSON object")
        except ValueError as exc:
            say({"status": "error", "error": f"unreadable command: {exc}"})
            continue
        with contextlib.redirect_stdout(sys.stderr):
            answers = engine.handle(command)
        for answer in answers:
            say(answer)
        if command.get("command") == "shutdown":
            return 0
    return 0


def _exit_with_parent() -> None:
    """A worker must not outlive its driver, kill -9 included, even in the middle of a job:
    a daemon thread watches the parent pid, which changes when the worker is re-parented."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
