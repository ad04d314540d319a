"""Every transport passes the worker contract (contract.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from contract import WorkerContract

from trialfuse.transport.server import Server


class SubprocessWorker:
    """`trialfuse worker` over JSON lines, as the process pool runs it."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "trialfuse", "worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ready = json.loads(self.proc.stdout.readline())

    def ask(self, command: dict, answers: int) -> list[dict]:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return [json.loads(self.proc.stdout.readline()) for _ in range(answers)]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class InProcessServer:
    """The server object itself, as a Ray actor or a test would host it."""

    def __init__(self):
        self.server = Server("cpu")
        self.ready = {"status": "ready", "device": self.server.device}

    def ask(self, command: dict, answers: int) -> list[dict]:
        result = self.server.handle(json.loads(json.dumps(command)))  # through JSON, as on the wire
        assert len(result) == answers
        return json.loads(json.dumps(result, default=float))

    def close(self) -> None:
        pass


class TestSubprocessWorker(WorkerContract):
    start_worker = SubprocessWorker


class TestInProcessServer(WorkerContract):
    start_worker = InProcessServer
