"""Which worker trains what: GPU workers for the NN, CPU workers for tree folds, and a GPU
worker's idle time for the tree families that can use it.

A family's row in the catalog says how it uses a GPU (`Family.gpu`):
- "nn": its own device on a GPU machine: only GPU workers take it (a CPU worker would hold
  a fold for minutes that the GPU trains in seconds); on a CPU-only pool CPU workers do;
- "can" (XGBoost, CatBoost): CPU workers, and a GPU worker when no NN work waits for it;
- "if_built" (LightGBM): as "can", but only on a worker whose library build has the CUDA
  learner (the pip wheel has none), as its ready line reports;
- "no": CPU workers only.
A pool with no CPU worker (`--devices cuda:0+cpu:0`) sends every family to its GPU workers;
a tree family that cannot use the GPU then trains there on the CPU.

How many trials a family keeps in flight (`window`) follows what takes its work: tree
families enough folds for every CPU worker twice over; the NN on GPUs as many models as
their free memory holds at once, since a fused batch pays off only with dozens of models.
The price is information: TPE asks a whole window before hearing from its first trial
(constant liar keeps them apart), so a window of W trials starts like W random draws;
MAX_NN_WINDOW bounds that per GPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from trialfuse.catalog import FAMILIES

GPU_MEMORY_SHARE = 0.7  # of a GPU's free memory the NN window plans to fill
MAX_NN_WINDOW = 64  # NN trials in flight per GPU at most
TYPICAL_HIDDEN_UNITS = 360  # the NN search space's mean total width (about 3 layers of 120)


@dataclass(frozen=True)
class Slot:
    """One worker: `kind` is how the pool treats it ("gpu" or "cpu"), `visible` the
    CUDA_VISIBLE_DEVICES its process gets ("" for none: a CPU worker, or in tests a CPU
    process standing in for a GPU worker), `threads` the CPU threads it may use."""

    kind: str
    visible: str = ""
    threads: int = 1

    @property
    def label(self) -> str:
        if self.kind == "cpu":
            return "cpu"
        return f"cuda:{self.visible}" if self.visible else "gpu (a cpu stand-in)"


def accepts(slot: Slot, family: str, capabilities: dict, slots: list[Slot]) -> bool:
    """Whether the worker in `slot` (its ready line's `capabilities`) may train `family`."""
    use = FAMILIES[family].gpu
    has_gpu = any(s.kind == "gpu" for s in slots)
    has_cpu = any(s.kind == "cpu" for s in slots)
    if slot.kind == "cpu":
        return use != "nn" or not has_gpu
    if use == "nn" or not has_cpu:
        return True
    return use == "can" or (use == "if_built" and bool(capabilities.get(f"{family}_cuda")))


def window(family: str, slots: list[Slot], readies: list[dict], folds: int, rows: int, features: int) -> int:
    """Trials of `family` to keep in flight on these workers (`readies`: their ready lines)."""
    row = FAMILIES[family]
    takers = [i for i, slot in enumerate(slots) if accepts(slot, family, readies[i], slots)]
    gpus = [i for i in takers if slots[i].kind == "gpu"]
    if row.batched and gpus:
        train_rows = rows * (folds - 1) // folds
        models = sum(nn_models_fit(readies[i].get("gpu_memory_free", 0), train_rows, features) for i in gpus)
        return max(row.in_flight, min(MAX_NN_WINDOW * len(gpus), models // folds))
    return max(row.in_flight, math.ceil(2 * len(takers) / folds))


def nn_models_fit(free_bytes: int, train_rows: int, features: int) -> int:
    """Typical NN models one fused batch holds in `free_bytes` (float32; inputs, ~8 activation
    tensors per layer kept for backward, and parameters with their gradients and Adam moments)."""
    width = TYPICAL_HIDDEN_UNITS
    per_model = 4 * (train_rows * (features + 8 * width) + 6 * (features * width // 3 + width * width // 3))
    return int(GPU_MEMORY_SHARE * free_bytes // per_model)


def first_choice(slot: Slot) -> str | None:
    """The family use a worker serves before any other waiting work: the NN, on a GPU worker."""
    return "nn" if slot.kind == "gpu" else None
