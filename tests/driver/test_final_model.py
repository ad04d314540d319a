"""What the saved model's holdout predictions say beside its score (driver/final_model.py)."""
from __future__ import annotations

import numpy as np

from trialfuse.driver.final_model import _classes_never_predicted
from trialfuse.task import NUMBERS, Kind, Task


def test_a_class_no_holdout_row_is_labelled_is_named_with_its_rows():
    """A 0.1% class (200 of 200,000 rows) scored accuracy 0.999 and balanced accuracy 0.5:
    every row labelled "no", and nothing said."""
    fraud = Task(Kind.BINARY, ("no", "yes"), "log_loss")
    y = np.r_[np.zeros(990), np.ones(10)]
    ranked = np.column_stack([1 - np.r_[np.full(990, 0.01), np.full(10, 0.3)], np.r_[np.full(990, 0.01),
                                                                                        np.full(10, 0.3)]])
    [line] = _classes_never_predicted(fraud, y, ranked)
    assert "'yes' (10 of 1000 rows)" in line and "--class-weight balanced" in line
    found = ranked.copy()
    found[-1] = [0.2, 0.8]  # one row labelled yes
    assert _classes_never_predicted(fraud, y, found) == []
    bands = Task(Kind.MULTICLASS, ("a", "b", "c"), "log_loss")
    assert _classes_never_predicted(bands, np.array([0, 1, 1]), np.eye(3)[[0, 0, 0]]) == [
        "no holdout row is labelled 'b' (2 of 3 rows): no row makes it the likeliest class; the probability "
        "columns still rank its rows, and --class-weight balanced labels more of them"]
    assert _classes_never_predicted(bands, np.array([0, 0, 1]), np.eye(3)[[0, 0, 1]]) == []  # c: no holdout row
    assert _classes_never_predicted(NUMBERS, np.array([1.0, 2.0]), np.array([1.0, 1.0])) == []
