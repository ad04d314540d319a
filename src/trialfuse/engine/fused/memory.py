"""Device memory for stacked batches: how many models fit, what counts as running out, and
giving back what a failed batch held (the batch is then halved: train.py)."""
from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from trialfuse.engine.families import FoldFailed
from trialfuse.engine.fused.mlp import stack_widths

if TYPE_CHECKING:
    from trialfuse.engine.fused.batching import Job

CPU_MAX_BATCH = 32  # models per batch on a CPU (memory there is not the limit)


def memory_cap(jobs: list[Job], fold_data, dev: torch.device, dtype) -> int:
    """Models per batch that fit in ~70% of free device memory (by a per-model estimate).
    Free counts the blocks torch holds in its cache but does not use: they are ours to reuse."""
    if dev.type != "cuda":
        return CPU_MAX_BATCH
    free, _ = torch.cuda.mem_get_info(dev)
    free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    itemsize = torch.empty((), dtype=dtype).element_size()
    n_train = max(len(f.y_train) for f in fold_data)
    n_val = max(len(f.y_val) for f in fold_data)
    n_features = fold_data[jobs[0].fold].x_train.shape[1]  # the group's inputs (one width per group)
    widths = stack_widths([j.params["hidden_layers"] for j in jobs])
    n_params = sum(a * b for a, b in zip([n_features, *widths], [*widths, 1], strict=True))
    # inputs + ~8 activation-sized tensors per layer kept for backward + params, grads, moments, best copy
    per_model = itemsize * ((n_train + n_val) * n_features + 8 * n_train * sum(widths) + 6 * n_params)
    return max(1, min(len(jobs), int(0.7 * free / per_model)))


def attempt(train: Callable[[], Any]) -> tuple[Any, str | None]:
    """(what `train` returned, None), or (None, its out-of-memory message); other errors rise.
    When this returns, the failed attempt's frames are gone, and with them the tensors its
    traceback held (stacked parameters, fold copies, Adam state, the graph), so
    `release_memory` can free them."""
    try:
        return train(), None
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
        if not is_oom(exc):
            raise
        return None, f"{type(exc).__name__}: {exc}"


def release_memory(dev: torch.device | str) -> None:
    """Collect what a failed batch left and hand the allocator's cached blocks back to the device,
    cuBLAS's workspaces too (they live in torch's cache; empty_cache alone keeps them)."""
    gc.collect()
    if torch.device(dev).type == "cuda":
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)  # CUDA builds only
        if clear_workspaces is not None:
            clear_workspaces()
        torch.cuda.empty_cache()


def out_of_memory(job: Job, message: str) -> FoldFailed:
    return FoldFailed(job.key, f"out of memory with one model alone ({message})")


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text or "not enough memory" in text
            or "cublas_status_alloc_failed" in text)
