"""The body of a Ray worker actor: the worker's `Server`, and the files its commands read and
write, in a scratch directory of the actor's node (see ray_workers.py). Its methods run in
the actor's process only; the driver imports this module to hand the class to Ray."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from trialfuse.transport import protocol
from trialfuse.transport.shipped_files import output_dirs, rewrite


class Host:
    """A `Server` and the files its commands read and write; `ray_workers` makes it an actor."""

    def __init__(self) -> None:
        from trialfuse.transport.server import Server, capabilities

        self.server = Server()
        self.ready = {"status": protocol.READY, "device": self.server.device, **capabilities(self.server.device)}
        self.scratch = Path(tempfile.mkdtemp(prefix="trialfuse-ray-"))
        self.calls = 0

    def hello(self) -> dict[str, Any]:
        import ray

        return {**self.ready, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def load(self, rows: bytes, command: dict[str, Any]) -> dict[str, Any]:
        """The search rows (from the object store) made resident, as `load_dataset` does from a file."""
        path = self.scratch / "search_rows.npz"
        path.write_bytes(rows)
        try:
            return self.server.handle({**command, "path": str(path)})[0]
        finally:
            path.unlink()  # the rows are in memory now

    def handle(self, command: dict[str, Any],
               files: dict[str, bytes | dict[str, bytes]]) -> tuple[list[dict], dict[str, dict]]:
        """(answers, {driver directory: {relative path: bytes}}) for one command whose input
        files came with it."""
        from trialfuse.transport.server import broken_cuda_context

        self.calls += 1
        call = self.scratch / f"call-{self.calls}"
        local = {}
        for i, (driver_path, data) in enumerate(files.items()):
            target = call / "in" / str(i) / Path(driver_path).name
            if isinstance(data, dict):  # a directory: its files, layout kept
                target.mkdir(parents=True)
                for name, content in data.items():
                    _write(target / name, content)
            else:
                _write(target, data)
            local[driver_path] = str(target)
        outputs = {d: str(call / "out" / str(i)) for i, d in enumerate(output_dirs(command))}
        for directory in outputs.values():
            Path(directory).mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr):
            answers = self.server.handle(rewrite(command, {**local, **outputs}))
        back = {d: {str(f.relative_to(here)): f.read_bytes() for f in Path(here).rglob("*") if f.is_file()}
                for d, here in outputs.items()}
        shutil.rmtree(call, ignore_errors=True)
        answers = rewrite(answers, {here: d for d, here in outputs.items()})
        if any(broken_cuda_context(a.get("error", "")) for a in answers):
            threading.Timer(0.5, os._exit, (70,)).start()  # as a process worker does: this GPU's context is lost
        return answers, back


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
