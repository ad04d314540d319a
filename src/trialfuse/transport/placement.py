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
"""
from __future__ import annotations

from dataclasses import dataclass

from trialfuse.catalog import FAMILIES


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


def first_choice(slot: Slot) -> str | None:
    """The family use a worker serves before any other waiting work: the NN, on a GPU worker."""
    return "nn" if slot.kind == "gpu" else None
