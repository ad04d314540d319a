"""A last-chance trial's sample of a fold's rows (trialfuse.engine.row_sample)."""
from __future__ import annotations

import numpy as np

from trialfuse.engine.row_sample import CLASS_ROWS, sampled


def test_a_sample_keeps_every_class_and_each_ones_share():
    """A plain draw of 1,000 of these 40,000 rows leaves the 6-row class out nine times in ten;
    XGBoost and CatBoost then refuse the fold."""
    rows = np.arange(100, 40_100)
    classes = np.r_[np.zeros(30_000), np.ones(9_994), np.full(6, 2)].astype(np.int64)
    for seed in range(20):
        drawn = sampled(rows, 1000, seed, classes)
        kept = classes[drawn - 100]
        assert np.bincount(kept).tolist() == [750, 250, CLASS_ROWS]
        assert np.all(np.diff(drawn) > 0) and np.isin(drawn, rows).all()
    plain = sampled(rows, 1000, 0)
    assert len(plain) == 1000 and np.all(np.diff(plain) > 0)
    assert sampled(rows, 50_000, 0, classes) is rows and sampled(rows, None, 0) is rows  # nothing to draw
    assert not np.array_equal(sampled(rows, 1000, 1), plain)  # each job's seed, its own draw
