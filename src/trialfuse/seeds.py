"""The one seed formula: a model's seed depends on the run seed, its trial and its fold only,
never on scheduling, so the same run seed gives the same models on any number of workers."""
from __future__ import annotations

RETRAIN = -1  # the "trial" of the final retrain on all search rows


def model_seed(seed: int, trial: int, fold: int = 0) -> int:
    """The seed of trial `trial`'s model on fold `fold` (the study gives every fold of a trial fold 0's)."""
    return (seed * 1_000_003 + trial * 7919 + fold * 104_729) % (2**31 - 1)
