"""`trialfuse worker`: a worker's `Server` (server.py) spoken to in JSON lines on stdin and
stdout, one process per device; the pool's end of the pipes is worker_process.py, and a Ray
actor hosts the same server instead (ray_host.py). The process leaves with its driver, and
leaves at once: after `shutdown` it skips the interpreter's teardown (1.1 s with torch and
the tree libraries loaded), which the pool's close would otherwise wait on, once a worker."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

from trialfuse.transport import protocol
from trialfuse.transport.server import Server, broken_cuda_context, capabilities


def main() -> None:
    """Serve until `shutdown` or the end of stdin, then exit without the interpreter's teardown:
    the answers are written and flushed, and a worker holds nothing else."""
    code = serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(stdin=None, stdout=None) -> int:
    """`trialfuse worker`: say ready, then answer each command line with one line per answer.
    Anything a library prints while a job runs goes to stderr: stdout carries only protocol lines."""
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    _exit_with_parent()
    server = Server()  # torch and the model libraries load later, on first use

    def say(payload: dict) -> None:
        out.write(json.dumps(payload, default=float) + "\n")
        out.flush()

    say({"status": protocol.READY, "device": server.device, **capabilities(server.device)})
    for line in stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("a command is a JSON object")
        except ValueError as exc:
            say(protocol.error(f"unreadable command: {exc}"))
            continue
        with contextlib.redirect_stdout(sys.stderr):
            answers = server.handle(command)
        for answer in answers:
            say(answer)
        broken = next((a["error"] for a in answers if broken_cuda_context(a.get("error", ""))), None)
        if broken:  # every later job on this GPU would fail too: its jobs are answered with the
            sys.stderr.write(f"trialfuse worker: the CUDA context is broken ({broken}); exiting\n")
            sys.stderr.flush()  # cause, then the worker exits and the pool starts a new one
            os._exit(70)
        if command.get("command") == protocol.SHUTDOWN:
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
