"""Which workers a run starts, found without importing torch.

A GPU is confirmed by nvidia-smi (CUDA_VISIBLE_DEVICES alone proves nothing: a CPU-only
container may set it) and used only if this environment's torch is a CUDA (or ROCm) build: a
CPU build, as `pip install torch==2.13.0` gives, would train a "GPU" worker's folds on one CPU
thread. CUDA_VISIBLE_DEVICES, when set, is the list `--devices cuda:IDS`
indexes into, as CUDA itself does (under Slurm with CUDA_VISIBLE_DEVICES=4,5, cuda:0 is
physical GPU 4). A GPU machine gets one worker pinned to each GPU (the NN's, and tree
folds' when it would idle) plus CPU workers on the remaining cores for tree trials.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from trialfuse.errors import UserError
from trialfuse.transport import placement
from trialfuse.transport.placement import Slot, WorkerKind


def detect_gpus() -> list[str]:
    """GPUs this process may use, as the ids to pin workers to (CUDA_VISIBLE_DEVICES' entries
    where it is set); empty unless nvidia-smi confirms there is a GPU."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    found = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
    visible = _visible()
    if visible is None:
        return found
    return visible[:len(found)]  # nvidia-smi lists every GPU of the machine; the process sees these


@functools.cache
def torch_has_cuda() -> bool:
    """Whether this environment's torch is built for a GPU, read from its version.py (`cuda` and
    `hip` are None in a CPU build) without importing it: the driver never imports torch, and a
    run's budget does not pay for the import."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return False
    built = re.findall(r"^(?:cuda|hip)\s*(?::[^=]*)?=\s*(.+?)\s*$", text, re.MULTILINE)
    return any(value != "None" for value in built)


def idle_gpus_note(spec: str) -> str | None:
    """One line for the run's output where `--devices auto` leaves a machine's GPUs unused
    because torch here has no CUDA; None otherwise. nvidia-smi, asked twice already at start-up,
    is asked again only where torch is a CPU build."""
    if spec.strip().lower() != "auto" or torch_has_cuda() or not detect_gpus():
        return None
    return ("GPUs found (nvidia-smi) but torch here is a CPU build: training on the CPU "
            "(install a CUDA build of torch to use them)")


def plan_workers(spec: str) -> list[Slot]:
    """Turn `--devices` into the workers to start.

    auto: every GPU plus CPU workers on the other cores (all cores if no GPU); cpu: one
    worker per core; N or cpu:N: N CPU workers; cuda:IDS: those GPUs (indexes into
    CUDA_VISIBLE_DEVICES where set) plus CPU workers on the other cores; cuda:IDS+cpu:N:
    that mix exactly (N may be 0).
    """
    text = spec.strip().lower()
    cores = placement.usable_cores()
    if text == "auto":
        gpus = detect_gpus()
        gpus = gpus if gpus and torch_has_cuda() else []
        return _mix(gpus, cores - len(gpus) if gpus else cores, cores)
    if text == "cpu":
        return _mix([], cores, cores)
    count = text[4:] if text.startswith("cpu:") else text  # cpu:N, as in a mix, is N
    if count.isdigit() and int(count) > 0:
        return _mix([], _at_most_cores(int(count), cores, spec), cores)
    gpu_part, _, cpu_part = text.partition("+")
    if gpu_part.startswith("cuda:") and (not cpu_part or cpu_part.startswith("cpu:")):
        ids = [i.strip() for i in gpu_part[5:].split(",")]
        count = cpu_part[4:]
        if ids and all(i.isdigit() for i in ids) and (not cpu_part or count.isdigit()):
            gpus = _pinned(ids, spec)
            return _mix(gpus, _at_most_cores(int(count), cores - len(gpus), spec) if cpu_part
                        else max(0, cores - len(gpus)), cores)
    raise UserError(f"--devices must be auto, cpu, a worker count (N or cpu:N), cuda:IDS or cuda:IDS+cpu:N "
                    f"(e.g. cuda:0,1 or cuda:0+cpu:6), got {spec!r}")


def describe(slots: list[Slot]) -> str:
    """e.g. "cuda:0,1 + 14 cpu" or "cpu x 2", for results.json and the report; on a Ray
    cluster, its totals: "ray: 3 nodes, 2 gpu + 4 cpu"."""
    gpus = [s.visible for s in slots if s.kind == WorkerKind.GPU]
    cpus = sum(s.kind == WorkerKind.CPU for s in slots)
    nodes = {s.node for s in slots if s.node}
    if nodes:
        return f"ray: {len(nodes)} node{'s' * (len(nodes) > 1)}, {len(gpus)} gpu + {cpus} cpu"
    if not gpus:
        return f"cpu x {cpus}"
    return f"cuda:{','.join(gpus)}" + (f" + {cpus} cpu" if cpus else "")


def _at_most_cores(cpu_workers: int, cores: int, spec: str) -> int:
    """`cpu_workers`, refused where it is more than the machine's cores: each worker is a process
    holding the table, and more of them than cores only take turns, their start-up alone
    past a short budget."""
    if cpu_workers > cores:
        raise UserError(f"--devices {spec}: {cpu_workers} CPU workers on {cores} CPU core(s) free for them; at most "
                        "one a core")
    return cpu_workers


def _mix(gpus: list[str], cpu_workers: int, cores: int) -> list[Slot]:
    """GPU workers get one thread each; CPU workers share the remaining cores."""
    cpu_cores = max(1, cores - len(gpus))
    threads = max(1, cpu_cores // cpu_workers) if cpu_workers else 1
    return [Slot(WorkerKind.GPU, gpu, 1) for gpu in gpus] + [Slot(WorkerKind.CPU, "", threads)
                                                            for _ in range(cpu_workers)]


def _pinned(ids: list[str], spec: str) -> list[str]:
    """The GPUs `cuda:IDS` names, checked before anything starts: on a machine with no GPU a
    worker pinned to one would train on the CPU under a GPU's name."""
    present = detect_gpus()
    if not present:
        raise UserError(f"--devices {spec}: no GPU here (nvidia-smi finds none); use --devices auto or cpu")
    if not torch_has_cuda():
        raise UserError(f"--devices {spec}: torch here is a CPU build; install a CUDA build of torch, "
                        "or use --devices cpu")
    visible = _visible()
    if visible is None:
        if any(int(i) >= len(present) for i in ids):
            raise UserError(f"--devices {spec}: this machine has {len(present)} GPU(s); cuda:N counts from 0")
        return ids
    if any(int(i) >= len(visible) for i in ids):
        raise UserError(f"--devices {spec}: this process sees {len(visible)} GPU(s) "
                        f"(CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}); cuda:N counts from 0 among them")
    return [visible[int(i)] for i in ids]


def _visible() -> list[str] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    visible = []
    for entry in (v.strip() for v in value.split(",")):
        if not entry or entry.startswith("-"):  # as CUDA does: an invalid entry hides it and all after it
            break
        visible.append(entry)
    return visible
