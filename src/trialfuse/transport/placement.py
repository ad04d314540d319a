"""Which worker trains what: GPU workers for the NN, CPU workers for tree folds, and a
family's whole search on one kind of device, decided once per run.

A family's row in the catalog says how it can use a GPU (`Family.gpu`, a `GpuUse`):
- ONLY (the NN): on a machine with GPUs only GPU workers take it (a CPU worker would hold
  a fold for minutes that the GPU trains in seconds); on a CPU-only pool CPU workers do;
- CAN (XGBoost, CatBoost): on GPU workers when the table has GPU_TREES_MIN_ROWS rows or
  more (their GPU learners pay off on large tables; a rule, not a measurement), else CPU;
- IF_BUILT (LightGBM): as CAN, and only if every GPU worker's build of the library has the
  CUDA learner (the pip wheel has none), as their ready lines report (`<family>_cuda`);
- NO: CPU workers only.
A pool with no CPU worker (`--devices cuda:0+cpu:0`) sends every family to its GPU workers
(a tree family that cannot use the GPU trains there on the CPU). Since a family's folds
all train on one kind of device, which worker is free first never changes a score: one
seed gives one result on a mixed pool too.

How many trials a family keeps in flight (`window`) follows what takes its work: tree
families enough folds for every worker that takes them twice over; the NN on GPUs, when
its folds train fused, as many models as their free memory holds at once, since a fused
batch pays off only with dozens of models. The price is information: TPE asks a whole
window before hearing from its first trial (constant liar keeps them apart), so a window
of W trials starts like W random draws. MAX_NN_WINDOW bounds that per GPU, and with a run's
trial count N (`--trials`) the GPU-sized window is at most N / TRIALS_PER_WINDOW. Measured at
equal trials (bench/nn_window.py, 64 NN trials, 8 seeds): mean best CV R² 0.173 with a window
of 8, 0.164 with 32, 0.155 with 64, the wider windows ahead in 2 seeds of 8 each. Only N = 64
was measured, where N / 8 is the catalog's 8; the same share for larger N is an extrapolation.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from trialfuse.catalog import FAMILIES, GpuUse

CGROUP_ROOT = Path("/sys/fs/cgroup")  # cgroup v2's cpu.max: "<quota> <period>" or "max <period>"
CGROUP_V1_QUOTA = CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us"  # cgroup v1: the quota; the period beside it

GPU_MEMORY_SHARE = 0.7  # of a GPU's free memory the NN window plans to fill
MAX_NN_WINDOW = 64  # NN trials in flight per GPU at most
GPU_TREES_MIN_ROWS = 100_000  # rows from which XGBoost / CatBoost (and a CUDA LightGBM) search on the GPU
TRIALS_PER_WINDOW = 8  # with --trials N, a GPU-sized NN window holds at most N / 8 trials (see the top)
TYPICAL_HIDDEN_UNITS = 360  # the NN search space's mean total width (about 3 layers of 120)


class WorkerKind(StrEnum):
    """How the pool treats a worker: which families it takes first, which it may take."""

    GPU = "gpu"
    CPU = "cpu"


@dataclass(frozen=True)
class Slot:
    """One worker: `kind` is how the pool treats it (a WorkerKind), `visible` the
    CUDA_VISIBLE_DEVICES its process gets ("" for none: a CPU worker, or in tests a CPU
    process standing in for a GPU worker), `threads` the CPU threads it may use, `node` the
    Ray node it lives on ("" on this machine)."""

    kind: WorkerKind
    visible: str = ""
    threads: int = 1
    node: str = ""

    @property
    def label(self) -> str:
        where = f" on node {self.node[:8]}" if self.node else ""
        if self.kind == WorkerKind.CPU:
            return "cpu" + where
        return (f"cuda:{self.visible}" if self.visible else "gpu (a cpu stand-in)") + where


def device_for(family: str, slots: list[Slot], readies: list[dict], rows: int) -> WorkerKind:
    """The kind of worker that trains all of `family`'s folds in this run."""
    gpus = [ready for slot, ready in zip(slots, readies, strict=True) if slot.kind == WorkerKind.GPU]
    if not gpus:
        return WorkerKind.CPU
    if not any(slot.kind == WorkerKind.CPU for slot in slots):
        return WorkerKind.GPU
    use = FAMILIES[family].gpu
    if use is GpuUse.ONLY:
        return WorkerKind.GPU
    built = use is GpuUse.CAN or (use is GpuUse.IF_BUILT and all(ready.get(f"{family}_cuda") for ready in gpus))
    return WorkerKind.GPU if built and rows >= GPU_TREES_MIN_ROWS else WorkerKind.CPU


def accepts(slot: Slot, family: str, slots: list[Slot], readies: list[dict], rows: int) -> bool:
    """Whether the worker in `slot` may train `family` (see device_for)."""
    return slot.kind == device_for(family, slots, readies, rows)


def window(family: str, slots: list[Slot], readies: list[dict], folds: int, rows: int, features: int,
           fused: bool = True, trials: int | None = None) -> int:
    """Trials of `family` to keep in flight on these workers (`readies`: their ready lines);
    `fused`: whether NN folds on a GPU train as one stacked model (not with --fuse off);
    `trials`: the family's trial count, if the run has one."""
    row = FAMILIES[family]
    takers = [i for i, slot in enumerate(slots) if accepts(slot, family, slots, readies, rows)]
    gpus = [i for i in takers if slots[i].kind == WorkerKind.GPU]
    if row.batched and gpus and fused:
        train_rows = rows * (folds - 1) // folds
        models = sum(nn_models_fit(readies[i].get("gpu_memory_free", 0), train_rows, features) for i in gpus)
        most = MAX_NN_WINDOW * len(gpus)
        if trials is not None:
            most = min(most, trials // TRIALS_PER_WINDOW)
        return max(row.in_flight, min(most, models // folds))
    if row.batched and not gpus:  # one at a time on CPUs: no fused batch to fill, and its next trial is
        return max(1, math.ceil(2 * len(takers) / folds))  # asked once the last one's cost is known
    return max(row.in_flight, math.ceil(2 * len(takers) / folds))


def nn_models_fit(free_bytes: int, train_rows: int, features: int) -> int:
    """Typical NN models one fused batch holds in `free_bytes` (float32; inputs, ~8 activation
    tensors per layer kept for backward, and parameters with their gradients and Adam moments)."""
    width = TYPICAL_HIDDEN_UNITS
    per_model = 4 * (train_rows * (features + 8 * width) + 6 * (features * width // 3 + width * width // 3))
    return int(GPU_MEMORY_SHARE * free_bytes // per_model)


def first_choice(slot: Slot) -> GpuUse | None:
    """The families a worker serves before any other waiting work: on a GPU worker, those
    only a GPU worker takes (the NN)."""
    return GpuUse.ONLY if slot.kind == WorkerKind.GPU else None


def gpus_without_cuda_note(workers) -> str | None:
    """One line where GPU workers started but their torch found no GPU, None otherwise: a Ray
    node that declares GPUs with a CPU build of torch (locally `--devices` refuses that before
    anything starts). What was placed on them trained on the CPU, one thread each. `workers`:
    the pool's (`contracts.Worker`: a slot and its ready line)."""
    blind = [w for w in workers if w.slot.kind == WorkerKind.GPU and w.ready
             and not str(w.ready.get("device", "")).startswith("cuda")]
    if not blind:
        return None
    ran_on = [w.ready.get("node") or w.slot.node for w in blind]  # the ready line's: Ray's affinity is soft
    nodes = sorted({node[:8] for node in ran_on if node})
    where = f" on Ray node{'s' * (len(nodes) > 1)} {', '.join(nodes)}" if nodes else ""
    return (f"{len(blind)} GPU worker{'s' * (len(blind) > 1)}{where} found no GPU through torch (a CPU build "
            "of torch, or the GPU not visible there): the work placed on them trained on one CPU thread each")


def usable_cores(quota_files: tuple[Path, ...] | None = None) -> int:
    """The CPU cores this process may use: those it is pinned to (taskset, a batch system's CPU
    set), at most the tightest CPU quota above it, rounded up (`docker run --cpus 2`, systemd's
    CPUQuota); os.cpu_count() counts the host's cores, so a container on a 64-core host started
    64 workers on 2 cores. `quota_files`: where the quotas are read (default: cpu_quota_files())."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no CPU sets
        cores = os.cpu_count() or 1
    quotas = [q for q in map(_cpu_quota, cpu_quota_files() if quota_files is None else quota_files) if q]
    return max(1, min([cores, *quotas]))


def cpu_quota_files(proc_cgroup: Path = Path("/proc/self/cgroup")) -> tuple[Path, ...]:
    """The cpu.max of this process's cgroup v2 and of each one above it (a limit anywhere up the
    tree binds; inside a container the root is its own), then cgroup v1's quota."""
    found = []
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):  # cgroup v2: "0::/path/of/this/group"
                here = CGROUP_ROOT / line[3:].strip().lstrip("/")
                found += [group / "cpu.max" for group in (here, *here.parents) if group.is_relative_to(CGROUP_ROOT)]
    except OSError:  # not Linux
        pass
    return (*dict.fromkeys([*found, CGROUP_ROOT / "cpu.max"]), CGROUP_V1_QUOTA)


def _cpu_quota(path: Path) -> int | None:
    """Cores a cgroup's quota file allows (rounded up), or None where it sets no limit or is not there."""
    try:
        fields = path.read_text().split()
        if path.name == "cpu.cfs_quota_us":
            fields += (path.parent / "cpu.cfs_period_us").read_text().split()
        quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):  # absent, "max" (no limit), unreadable
        return None
    return math.ceil(quota / period) if quota > 0 and period > 0 else None
