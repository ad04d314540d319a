"""Workers as Ray actors: the same pool, scheduler and protocol, past one machine (`--ray`).

Each worker is an actor hosting the same `Server` a `trialfuse worker` process runs: one
per GPU in the cluster (num_gpus=1 and one CPU for its threads), one per remaining CPU for
tree folds. The pool drives them exactly as it drives processes (`RayWorker` has the
process's start / request / kill / close), so the driver keeps Optuna's asks and tells,
its storage and the scheduler; only the transport differs. Each call is one task of the
pool (a fold, or a fused NN batch), so calls are short: Ray cannot stop a running method.

- The search rows go into the object store once (`ray.put`); each actor takes the reference.
- Files travel with the calls (`shipped_files.py`): a command's input files (a table to
  score, fold models, a saved model) are sent with it, and what the actor writes (models,
  fold models) comes back and is written where the driver asked, so nodes need no shared disk.
- Faults: actors have `max_restarts=0` and calls `max_task_retries=0`, so the pool, not Ray,
  decides: a dead actor is replaced once and its task re-sent, as for a process; an actor
  whose node died is not replaced (`SlotGone`): its task goes back to the queue and the run
  goes on with fewer workers.

`ray` is imported only here, and only when a run asks for it (`pip install trialfuse[ray]`).
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

from trialfuse.errors import UserError
from trialfuse.transport.contracts import READY_TIMEOUT, SlotGone, WorkerLost
from trialfuse.transport.placement import Slot, WorkerKind
from trialfuse.transport.shipped_files import input_files


def connect(address: str) -> None:
    """Start a local Ray instance (`local`) or join a cluster (`auto`, or its address)."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'trialfuse[ray]'") from None
    if ray.is_initialized():  # this process is already connected (the API, a test): that cluster
        return
    if (where := _bootstrap_address(address)) and (why := _unreachable(where)):
        raise UserError(f"--ray {address}: cannot reach a Ray cluster at {where} ({why}): check the address, "
                        "start one there (ray start --head), or use --ray local")
    kwargs = {"include_dashboard": False, "log_to_driver": False}
    try:  # "local" starts a new instance even where RAY_ADDRESS or a `ray start` would be joined
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--ray {address}: cannot reach the cluster ({str(exc).splitlines()[0]})") from None


PROBE_SECONDS = 3  # a cluster's head answers a TCP connect in milliseconds; Ray would retry for minutes


def _bootstrap_address(address: str) -> str | None:
    """The address `ray.init` would dial for `address`: one given is dialled as it is; for `auto`
    RAY_ADDRESS where set, else the last `ray start`'s (Ray's own record of it), as Ray reads
    them; None for `local`, or where none is known (Ray then answers at once)."""
    if address == "local":
        return None
    given = (os.environ.get("RAY_ADDRESS") or address) if address == "auto" else address
    if given != "auto":
        return given
    try:
        from ray._private.utils import read_ray_address  # private: without it, `auto` is Ray's to judge

        return read_ray_address(None)
    except Exception:
        return None


def _unreachable(address: str) -> str | None:
    """Why nothing answers at HOST:PORT (None: something does, or it is not HOST:PORT). Checked
    before `ray.init`, which retries an address nothing answers at for minutes, past --timeout."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit() or not host:
        return None
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_SECONDS):
            return None
    except socket.gaierror:
        return f"no host named {host!r}"
    except TimeoutError:
        return f"no answer within {PROBE_SECONDS} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def cluster_slots() -> list[Slot]:
    """One GPU worker per GPU of every live node, then one CPU worker per CPU left there."""
    import ray

    slots = []
    for node in sorted((n for n in ray.nodes() if n["Alive"]), key=lambda n: n["NodeID"]):
        gpus, cpus = int(node["Resources"].get("GPU", 0)), int(node["Resources"].get("CPU", 0))
        slots += [Slot(WorkerKind.GPU, str(i), 1, node=node["NodeID"]) for i in range(gpus)]
        slots += [Slot(WorkerKind.CPU, "", 1, node=node["NodeID"]) for _ in range(max(0, cpus - gpus))]
    return slots


def node_alive(node_id: str) -> bool:
    import ray

    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


_ACTOR: list[Any] = []
_ROWS: dict[str, Any] = {}  # NPZ path -> its object-store reference: the search rows are put once
_ROWS_LOCK = threading.Lock()


def _actor_class():
    if not _ACTOR:
        import ray

        from trialfuse.transport.ray_host import Host

        _ACTOR.append(ray.remote(max_restarts=0, max_task_retries=0)(Host))
    return _ACTOR[0]


def _rows_ref(path: str):
    import ray

    with _ROWS_LOCK:
        if path not in _ROWS:
            _ROWS[path] = ray.put(Path(path).read_bytes())
        return _ROWS[path]


class RayWorker:
    """One actor as a `contracts.Worker`, so `WorkerPool` drives it as it drives a process
    (the class itself is the pool's `contracts.WorkerFactory`)."""

    def __init__(self, env: dict[str, str], dataset: dict[str, Any], slot: Slot | None = None, log=None):
        self.env, self.dataset, self.log = env, dataset, log
        self.slot = slot or Slot(WorkerKind.CPU)
        self.ready: dict[str, Any] = {}
        self.tried = threading.Event()
        self.busy = threading.Lock()
        self.retired = False
        self.actor = None

    def start(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self.retired:
            raise WorkerLost("the pool is closed")
        if self.slot.node and not node_alive(self.slot.node):
            raise SlotGone(f"its node {self.slot.node[:8]} is gone")
        placement = {"num_cpus": self.slot.threads, "num_gpus": 1 if self.slot.kind == WorkerKind.GPU else 0}
        if self.slot.kind == WorkerKind.CPU:  # a CPU actor sees no GPU, whatever Ray's default for num_gpus=0
            placement["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
        if self.slot.node:  # soft: Ray may place it elsewhere if its node cannot take it
            placement["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self.slot.node, soft=True)
        self.actor = _actor_class().options(**placement).remote()
        try:
            self.ready = ray.get(self.actor.hello.remote(), timeout=READY_TIMEOUT)
            loaded = ray.get(self.actor.load.remote(_rows_ref(self.dataset["path"]), self.dataset),
                             timeout=READY_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            self.kill()
            raise WorkerLost(f"the actor did not start within {READY_TIMEOUT:g} s") from None
        except ray.exceptions.RayError as exc:
            self.kill()
            raise self._lost(exc) from None
        if loaded.get("status") != "loaded":
            self.kill()
            raise WorkerLost(f"the worker could not load the search rows: {loaded.get('error')}")

    def request(self, command: dict[str, Any], answers: int, timeout: float) -> list[dict[str, Any]]:
        import ray

        if self.actor is None:
            self.start()
        call = self.actor.handle.remote(command, input_files(command))
        try:
            replies, files = ray.get(call, timeout=None if timeout == float("inf") else timeout)
        except ray.exceptions.GetTimeoutError:
            self.kill()
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        except ray.exceptions.RayError as exc:
            self.kill()  # an actor that answered with an exception may still hold its GPU
            raise self._lost(exc) from None
        for directory, written in files.items():
            for name, data in written.items():
                target = Path(directory) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        if len(replies) != answers:
            raise WorkerLost(f"the actor gave {len(replies)} answers to a command that needs {answers}")
        return replies

    def _lost(self, exc: Exception) -> WorkerLost | SlotGone:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.slot.node and not node_alive(self.slot.node):
            return SlotGone(f"its node {self.slot.node[:8]} is gone ({first})")
        return WorkerLost(f"the actor died ({first})")

    def kill(self) -> None:
        import ray

        if self.actor is not None:
            with contextlib.suppress(Exception):
                ray.kill(self.actor, no_restart=True)
            self.actor = None

    close = kill

    @staticmethod
    def release(dataset: dict[str, Any]) -> None:
        """The pool closed: its search rows leave the object store."""
        with _ROWS_LOCK:
            _ROWS.pop(dataset.get("path"), None)

