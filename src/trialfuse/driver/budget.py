"""`--timeout`: when the search must stop so that the winner's retrain and the report still fit.

The run's end is fixed; the search's end moves with what is known. Before any trial is
complete a fifth of the budget is kept back (the report's share is at most that). Once one
is, the reserve is the leader's estimated retrain (its best trial's fold times, scaled up to
all the search rows) plus the report's share (5 s; a fifth of a budget under 25 s, which a
fixed 5 s would leave nothing else), at most half the budget: a long budget
is not left a fifth idle, and a slow leader still gets the time its retrain needs. Where an
ensemble may be retrained instead, the reserve covers its likely members' retrains too; a
model served by its kept fold models (`--no-refit`) needs a second, and an NN one about a second
more per fold (each is exported then).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

REPORT_SECONDS = 5.0  # results, report and closing the workers: the explanation and the probe end before it
REPORT_SHARE = 0.2  # of a short budget, at most, kept for that: at 10 s, 5 s left none for the ensemble
FIRST_RESERVE = 0.2  # of the budget, kept back before any trial is complete
FOLD_SERVING_SECONDS = 1.0  # copying a model's kept fold models and predicting the holdout with them
# An NN fold model is exported (torch.export) when served: the first export in a worker process
# costs far more than the next, so one first export per NN member (an over-count where several
# share a worker) and a third of a second a fold; at a flat second a fold, stacks with NNs that
# fit were refused (bench/results/HISTORY.md, "Figures that lived in code comments").
EXPORT_FIRST_SECONDS = 1.5
EXPORT_SECONDS_PER_FOLD = 0.35
MOST_RESERVED = 0.5  # of the budget, whatever the estimate
TOLERANCE = 0.1  # of the budget: how far past it an estimate may reach (the run promises T + 10% + 15 s at most)
PROMISED_SECONDS = 15.0  # the promise's last part: T + TOLERANCE x T + this
RESCUE_SERVING_SECONDS = 5.0  # serving a last-chance trial's fold models, an NN's exports included


@dataclass(frozen=True)
class Budget:
    """A run's time budget: `end` is the time.monotonic() by which the whole run should be over."""

    end: float
    seconds: float  # the budget as given (--timeout)

    @classmethod
    def starting_now(cls, started: float, seconds: float) -> Budget:
        return cls(started + seconds, seconds)

    def search_end(self, leader_seconds: float | None = None, members_seconds: Sequence[float] = (),
                   workers: int = 1) -> float:
        """When the search stops, given the time the best trial so far needs after the search
        (its retrain, see final_seconds; None: no trial yet) and, where an ensemble may follow,
        its likely members' (each family's best), which share the `workers`."""
        if leader_seconds is None:
            reserve = FIRST_RESERVE * self.seconds
        else:
            reserve = self.report_seconds + max(leader_seconds, parallel_seconds(list(members_seconds), workers))
        return self.end - min(reserve, MOST_RESERVED * self.seconds)

    @property
    def report_seconds(self) -> float:
        """The share kept at the end for the results, the report and closing the workers."""
        return min(REPORT_SECONDS, REPORT_SHARE * self.seconds)

    def left(self) -> float:
        """Seconds until the run should be over, the report's share taken off."""
        return self.end - self.report_seconds - time.monotonic()

    def report_starts(self) -> float:
        """The wall time (time.time(), as workers read it) at which the report's share begins:
        where work after the search (the explanation, the diagnostics probe) must have ended."""
        return wall_time(self.end - self.report_seconds)

    def last_end(self) -> float:
        """The latest a run with no model yet may still train one (time.monotonic()): as far past
        the budget's end as its promise (T + 10% + 15 s) allows, once that model's serving and
        the report are kept back."""
        return self.end + TOLERANCE * self.seconds + PROMISED_SECONDS - RESCUE_SERVING_SECONDS - self.report_seconds

    def fits(self, seconds: float) -> bool:
        """Whether work estimated at `seconds` may start now: estimates are rough (a retrain's
        from its folds' times), so one may reach past the end by the budget's tolerance."""
        return seconds <= self.left() + TOLERANCE * self.seconds


def wall_time(monotonic: float) -> float:
    """A time.monotonic() moment as time.time(): what workers, in other processes, compare with."""
    return time.time() + (monotonic - time.monotonic())


def final_seconds(fold_seconds: list[float], from_folds: bool, exported: bool = False) -> float:
    """A model's time after the search: its retrain, or where it is served by its K fold
    models (kept by the search), copying them (`exported`: exporting each) and predicting
    the holdout with them."""
    if not from_folds:
        return retrain_seconds(fold_seconds)
    exports = EXPORT_FIRST_SECONDS + EXPORT_SECONDS_PER_FOLD * len(fold_seconds) if exported else 0.0
    return FOLD_SERVING_SECONDS + exports


def retrain_seconds(fold_seconds: list[float]) -> float:
    """The retrain's time from K folds' training times: a fold trains on (K-1)/K of the rows,
    the retrain on all of them, so about the folds' total over K-1 (rounds and threads only
    make it shorter)."""
    return sum(fold_seconds) / max(1, len(fold_seconds) - 1)


def parallel_seconds(durations: list[float], workers: int) -> float:
    """About how long independent jobs take spread over `workers`: at least the longest one,
    at least their total shared out."""
    return max(max(durations, default=0.0), sum(durations) / max(1, workers))


def finish_estimate(queued: int, running: list[float], per_fold: float, workers: int) -> float:
    """Seconds until a trial's last fold ends, if the workers took its folds next: each running
    fold (`running`: seconds it has run) ends `per_fold` after it started, and each queued one
    goes to the first worker free."""
    free_at = sorted(max(per_fold - ran, 0.0) for ran in running)[:workers]
    free_at += [0.0] * (workers - len(free_at))
    for _ in range(queued):
        free_at.sort()
        free_at[0] += per_fold
    return max(free_at)


def say_seconds(seconds: float) -> str:
    """A duration as a person reads it in a message: tenths under 10 s, so that a trial of
    "about 0 s" is not said not to fit in "the 0 s left"; whole seconds above; never below 0."""
    seconds = max(0.0, seconds)
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"

