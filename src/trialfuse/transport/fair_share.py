"""Which family a free worker serves next when a time budget is shared by cost: fair queuing
on the compute actually spent.

The scheduler sets each family's share of the compute and what one of its folds is expected
to cost (driver.allocation). A fold is charged to its family at that estimate when a worker
takes it, and the charge is corrected to what it took when it answers. The family with the
least compute over its share gets the next free worker. Charging at the take keeps two free
workers from both going to the same family; correcting by the answer keeps a family whose
folds cost more than expected (an NN fold on a CPU can cost thirty tree folds) from getting
more than its share, which fixed queue places, set when a trial is asked, cannot do.
"""
from __future__ import annotations


class FairShare:
    def __init__(self) -> None:
        self.shares: dict[str, tuple[float, float]] = {}  # family -> (share, expected seconds of one fold)
        self.charged: dict[str, float] = {}  # compute-seconds per family: answered folds, plus running estimates
        self._expected: dict[int, float] = {}  # what each running fold was charged at its take

    def behind(self, family: str) -> float:
        """The family's compute over its share: the lowest is served first."""
        share = self.shares.get(family, (1.0, 0.0))[0]
        return self.charged.get(family, 0.0) / max(share, 1e-9)

    def take(self, key: int, family: str) -> None:
        """A worker took fold `key` (any id unique while it runs) of `family`."""
        self._expected[key] = self.shares.get(family, (1.0, 0.0))[1]
        self.charged[family] = self.charged.get(family, 0.0) + self._expected[key]

    def answered(self, key: int, family: str, seconds: float | None) -> None:
        """Fold `key` answered after `seconds` of compute (None: unknown, the estimate stands)."""
        expected = self._expected.pop(key, 0.0)
        took = expected if seconds is None else float(seconds)
        self.charged[family] = self.charged.get(family, 0.0) + took - expected
