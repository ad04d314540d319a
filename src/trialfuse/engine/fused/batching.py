"""How the jobs that may share a stacked batch are cut into batches: by depth, shape and
size, and, as candidates a GPU has yet to time, by model-rows or padding."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trialfuse.engine.fused.mlp import stack_widths

# A candidate limit on a batch, in model-rows (models x training rows): past it a GPU may be busy
# enough that more models buy only padding (a batch's layers are as wide as its widest model's),
# but each batch also costs its host work every epoch. Not the default until a GPU measures it
# (`trialfuse bench --modes fused,fused-filled`)
FILL_MODEL_ROWS = 2**18
# A candidate limit on padding (see `padding`): a batch as wide as its widest model computes
# several times its models' own multiply-adds; closing a batch past 1.25x their own units trades
# that for more, smaller batches (bench/padding.py measures both). Fewer launches or less padding:
# not the default until a GPU times it (`trialfuse bench --modes fused,fused-snug`)
SNUG_PADDING = 1.25


@dataclass
class Job:
    """One model to train: a config on a fold, from a seed."""

    params: dict[str, Any]
    fold: int
    seed: int
    key: int = 0  # position in the caller's list
    keep: bool = False  # the result carries the trained model (an mlp.ScaledMLP) to be kept


@dataclass(frozen=True)
class Batching:
    """How the jobs memory would let share a batch are cut into stacked batches. The defaults
    are what a study uses; the rest are candidates a GPU has yet to time (`trialfuse bench`
    modes fused-filled, fused-padded, fused-snug): each trades fewer, larger launches against
    padding, the work a batch does for its narrowest and shallowest models' empty units."""

    fill: int | None = None  # model-rows after which a batch is full (None: only memory limits it)
    pad_depths: bool = False  # every depth in one batch: shallower models pass through the layers they lack
    max_padding: float | None = None  # a batch closes before a model that would make its hidden units
    # (models x the stack's widths) more than this multiple of its models' own (None: no limit)


AS_A_STUDY = Batching()


def depth_group(job: Job, batching: Batching) -> int:
    """The depth a job's batch holds: its own, or with `pad_depths` one group for every depth (a
    model with no hidden layer stays apart: it has no output to carry)."""
    depth = len(job.params["hidden_layers"])
    return min(depth, 1) if batching.pad_depths else depth


def plan_batches(jobs: list[Job], n_train: int, cap: int, batching: Batching = AS_A_STUDY) -> list[list[Job]]:
    """Jobs of one group cut into stacked batches: deepest and widest first, the folds of one
    config side by side and similar shapes together, so little of a batch is padding; a batch
    closes at `cap` models, once it holds `batching.fill` model-rows, or before a model that
    would take its padding past `batching.max_padding`."""
    shape = lambda job: (len(job.params["hidden_layers"]), sum(job.params["hidden_layers"]),  # noqa: E731
                         tuple(job.params["hidden_layers"]))
    fill = batching.fill
    per_batch = cap if fill is None else max(1, min(cap, math.ceil(fill / n_train)))
    batches: list[list[Job]] = []
    for job in sorted(jobs, key=shape, reverse=True):
        if batches and len(batches[-1]) < per_batch and (
                batching.max_padding is None or padding([*batches[-1], job]) <= batching.max_padding):
            batches[-1].append(job)
        else:
            batches.append([job])
    return batches


def padding(batch: list[Job]) -> float:
    """A batch's hidden units (models x the stack's widths) over its models' own: 1.0 is none.
    Every [M, N, H] pass, and most of each matmul, scales with the first."""
    widths = [job.params["hidden_layers"] for job in batch]
    return len(batch) * sum(stack_widths(widths)) / sum(sum(w) for w in widths)
