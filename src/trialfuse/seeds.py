"""The one seed formula: a model's seed depends on the run seed, its trial and its fold only,
never on scheduling, so the same run seed gives the same models on any number of workers."""
from __future__ import annotations

RETRAIN = -1  # the "trial" of the final retrain on all search rows


def model_seed(seed: int, trial: int, fold: int = 0) -> int:
    """The seed of trial `trial`'s model on fold `fold` (the study gives every fold of a trial fold 0's)."""
    return (seed * 1_000_003 + trial * 7919 + fold * 104_729) % (2**31 - 1)


def seeded_as(number: int, user_attrs: dict) -> int:
    """The place a trial's models and its sampler are seeded by: its draw, its place among the
    study's first askings (scheduler.FamilySearch records it), which a trial asked again (cut
    by the budget or left by a driver that died) carries from the trial it repeats; so a resumed
    run asks and trains what an uninterrupted one would have. A trial recorded before draws
    were: its number, or the number of the trial it repeats (`retry_of`)."""
    return int(user_attrs.get("draw", user_attrs.get("retry_of", number)))
