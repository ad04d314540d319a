"""How a time budget is shared among the families when `--trials` does not fix it: FLAML's
cost-aware choice of learner, applied to the pool's queue.

Each family has a clock in compute-seconds. A trial it asks takes the clock's value as its
turn in the queue (the pool serves the lowest turn first), and the clock then moves on by
what the trial is expected to cost over the family's share. A family with half the share
waits twice as long in queue terms for each trial, so the workers spend about half as much
on it.

A family's share is 1 (equal compute) until it has its first trials complete (the catalog's
`first_trials`: two, one for the NN, whose CPU trial costs several tree trials): every family
gets its first trials. After that the share follows the estimated cost for improvement
(ECI, Wang et al., "FLAML", MLSys 2021): the compute the family is expected to need to beat
the best model of the run. It is the longer of the time since its last improvement and the
time between its last two, and, if it trails, its gap to the leader at its own last rate of
gain (or, if it never improved on itself, the leader's). Share = lowest ECI / its ECI, at
least MIN_SHARE: FLAML, too, keeps every learner in play with some probability, since a
slow starter can still win.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from trialfuse.catalog import FAMILIES

MIN_SHARE = 0.1  # of the leading family's compute, whatever a family's estimate


@dataclass
class Ledger:
    """One family's account: compute spent this run and the history of its best CV score."""

    spent: float = 0.0  # compute-seconds of its answered folds
    fold_seconds: list[float] = field(default_factory=list)  # of its complete folds: the cost estimate
    complete: int = 0
    best: float | None = None
    improved_at: list[float] = field(default_factory=list)  # `spent` each time its best rose
    gains: list[float] = field(default_factory=list)  # by how much it rose (from the second time on)


class CostShares:
    """The families' clocks and shares; the scheduler reports folds and trials, asks for turns."""

    def __init__(self, families: list[str], folds: int):
        self.folds = folds
        self.ledgers = {family: Ledger() for family in families}
        self.clocks = {family: 0.0 for family in families}

    def fold_done(self, family: str, seconds: float, complete: bool) -> None:
        ledger = self.ledgers[family]
        ledger.spent += seconds
        if complete:
            ledger.fold_seconds.append(seconds)

    def trial_done(self, family: str, value: float | None) -> None:
        """A trial was told: `value` is its CV score if it completed, else None."""
        ledger = self.ledgers[family]
        if value is None:
            return
        ledger.complete += 1
        if ledger.best is None or value > ledger.best:
            if ledger.best is not None:
                ledger.gains.append(value - ledger.best)
            ledger.best = value
            ledger.improved_at.append(ledger.spent)

    def next_turn(self, family: str) -> tuple[float, float]:
        """(turn, step) for the family's next trial: its place in the queue, and how far its clock
        moves. The place is never before the compute the family has used at its share now: a
        trial that cost more than its estimate (an NN trial on a CPU: 9 s a fold on movies where
        the catalog guessed 4), or a share that fell since the clock moved, sends it further back."""
        share = self.share(family)
        step = self.trial_seconds(family) / share
        turn = max(self.clocks[family], self.ledgers[family].spent / share)
        self.clocks[family] = turn + step
        return turn, step

    def trial_seconds(self, family: str) -> float:
        """Expected compute of one trial: its folds' median so far, else the catalog's rough cost."""
        seconds = sorted(self.ledgers[family].fold_seconds)
        per_fold = seconds[len(seconds) // 2] if seconds else float(FAMILIES[family].cost)
        return max(per_fold, 1e-3) * self.folds

    def share(self, family: str) -> float:
        estimates = {name: self.eci(name) for name in self.ledgers}
        own, known = estimates[family], [e for e in estimates.values() if e is not None]
        if own is None or not known:
            return 1.0
        return max(MIN_SHARE, min(1.0, min(known) / own))

    def eci(self, family: str) -> float | None:
        """Estimated compute-seconds for the family to beat the run's best; None while it has
        fewer than its first trials complete."""
        ledger = self.ledgers[family]
        if ledger.complete < FAMILIES[family].first_trials or ledger.best is None:
            return None
        own = max(ledger.spent - ledger.improved_at[-1], _between(ledger), self.trial_seconds(family))
        leader = max((other for other in self.ledgers.values() if other.best is not None), key=lambda o: o.best)
        if ledger.best >= leader.best:
            return own
        rate = _rate(ledger) or _rate(leader)  # never improved on itself: at best as fast as the leader did
        return max(own, (leader.best - ledger.best) / rate) if rate else 2 * own


def _between(ledger: Ledger) -> float:
    """Compute-seconds between the last two improvements (to the first, if there was one)."""
    marks = ledger.improved_at
    return marks[-1] - marks[-2] if len(marks) >= 2 else marks[-1]


def _rate(ledger: Ledger) -> float | None:
    """CV score gained per compute-second at the family's last improvement, if it has improved on itself."""
    between = _between(ledger)
    return ledger.gains[-1] / between if ledger.gains and between > 0 and ledger.gains[-1] > 0 else None
