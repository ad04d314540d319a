"""`--timeout`: when the search must stop so that the winner's retrain and the report still fit.

The run's end is fixed; the search's end moves with what is known. Before any trial is
complete a fixed share is kept back (a fifth of the budget, at least 5 s, at most 40%).
Once one is, the reserve is the leader's estimated retrain (its best trial's fold times,
scaled up to all the search rows) plus the report, at most half the budget: a long budget
is not left a fifth idle, and a slow leader still gets the time its retrain needs.
"""
from __future__ import annotations

from dataclasses import dataclass

REPORT_SECONDS = 5.0  # results, report and closing the workers; the diagnostics probe runs only if this is left
MOST_RESERVED = 0.5  # of the budget, whatever the estimate


@dataclass(frozen=True)
class Budget:
    """A run's time budget: `end` is the time.monotonic() by which the whole run should be over."""

    end: float
    seconds: float  # the budget as given (--timeout)

    @classmethod
    def starting_now(cls, started: float, seconds: float) -> Budget:
        return cls(started + seconds, seconds)

    def search_end(self, leader_fold_seconds: list[float] | None = None) -> float:
        """When the search stops, given the best trial so far's fold times (None: no trial yet)."""
        if not leader_fold_seconds:
            reserve = min(0.4 * self.seconds, max(REPORT_SECONDS, 0.2 * self.seconds))
        else:
            reserve = REPORT_SECONDS + retrain_seconds(leader_fold_seconds)
        return self.end - min(reserve, MOST_RESERVED * self.seconds)


def retrain_seconds(fold_seconds: list[float]) -> float:
    """The retrain's time from K folds' training times: a fold trains on (K-1)/K of the rows,
    the retrain on all of them, so about the folds' total over K-1 (rounds and threads only
    make it shorter)."""
    return sum(fold_seconds) / max(1, len(fold_seconds) - 1)
