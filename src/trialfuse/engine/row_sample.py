"""Seeded draws of at most so many rows, in their order: a run's last-chance trial's training
rows (driver/last_chance.py, RESCUE_TRAIN_ROWS: a table too big for its budget still gets a model
trained on part of each fold), the rows the NN's coding is fit on (input_coding.FIT_ROWS), the
rows a fold's train loss is read on (scores.TRAIN_LOSS_ROWS).

For classes the draw is stratified and keeps a few rows of every class the fold holds: a
plain draw of 10,000 from 400,000 training rows left a 60-row class out of a fold four
times in five, and XGBoost, CatBoost and scikit-learn's models then refuse the fold or
answer fewer probability columns than the task has classes."""
from __future__ import annotations

import numpy as np

CLASS_ROWS = 5  # rows a class keeps in the draw at least (all of them, if it has fewer)


def sampled(rows: np.ndarray, most: int | None, seed: int, classes: np.ndarray | None = None) -> np.ndarray:
    """At most about `most` of `rows` (indices), drawn with `seed`, in their order; `classes`:
    each row's class code (aligned with `rows`), to draw each class's share of `most`."""
    if most is None or len(rows) <= most:
        return rows
    rng = np.random.default_rng(seed)
    if classes is None:
        return np.sort(rng.choice(rows, int(most), replace=False))
    picked = []
    for k in np.unique(classes):
        own = rows[classes == k]
        share = max(min(len(own), CLASS_ROWS), round(most * len(own) / len(rows)))
        picked.append(rng.choice(own, min(share, len(own)), replace=False))
    return np.sort(np.concatenate(picked))
