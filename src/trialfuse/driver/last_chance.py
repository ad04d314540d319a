"""A run's last chance: where no trial finished by the search's deadline, one more trial, of the
quickest family and shaped so that it fits what is left (until `Budget.last_end`), so the run
still saves a model. A rerun asks its settings again on every row and column, after the
search's other cut trials (trial_records.queue_sampled_again; Optuna's queue is first in, first out).

Its shape: a fold on at most RESCUE_TRAIN_ROWS training rows where the search's give it more
(validation rows whole; a million rows' LightGBM trial took a 60 s run to 303 s), and on a table
of more than RESCUE_COLUMNS columns a family that trains a fold alone, on that many: those most
related to the target in the fold's training rows (engine/column_screen.py; a 2,000-column
LightGBM fold took 32 s, and every family's was longer than a 60 s run's search).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trialfuse.catalog import FAMILIES

RESCUE_TRAIN_ROWS = 10_000  # a last-chance trial's training rows a fold (FLAML's first sample size)
RESCUE_COLUMNS = 100  # its columns on a wider table: 1,750 x 100 LightGBM rounds cost 1/20 of 2,000's


@dataclass(frozen=True)
class LastChance:
    family: str
    train_rows: int | None  # a fold's training rows at most (SearchSettings.train_rows)
    screen: int | None  # a fold's columns at most (SearchSettings.screen)


def shaped(fold_seconds: dict[str, list[float]], folds: int, rows: int | None, columns: int | None) -> LastChance:
    """The last chance among the families not failed, with the seconds each one's finished folds
    took: the quickest (by those, else the catalog's cost), on a wide table one that trains a fold
    alone (a batched one, the fused NN, trains on every column) where there is one."""
    wide = first_screen(columns) is not None
    candidates = [f for f in fold_seconds if not (wide and FAMILIES[f].batched)] or list(fold_seconds)
    family = min(candidates, key=lambda f: (not fold_seconds[f], np.median(fold_seconds[f]) if fold_seconds[f] else 0,
                                            FAMILIES[f].cost))
    sample = RESCUE_TRAIN_ROWS if rows is None or rows - rows // folds > RESCUE_TRAIN_ROWS else None
    return LastChance(family, sample, RESCUE_COLUMNS if wide and not FAMILIES[family].batched else None)


def first_screen(columns: int | None) -> int | None:
    """On a table of more than RESCUE_COLUMNS columns, how many a new study's first trial trains on
    (a family that trains a fold alone; FamilySearch._screened): where only the NN finished a trial
    on every column, a useless one won the run (2,000 x 2,000 at 120 s: holdout R² 0.39, against
    0.84 for a screened LightGBM at 30 s)."""
    return RESCUE_COLUMNS if columns is not None and columns > RESCUE_COLUMNS else None
