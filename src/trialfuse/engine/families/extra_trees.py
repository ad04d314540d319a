"""scikit-learn's extra trees: random split thresholds on all rows, faster than the random
forest and rougher.
Trained, served and saved as every forest is (forests.py, sklearn_saved.py)."""
from __future__ import annotations

from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

from trialfuse.engine.families import forests
from trialfuse.engine.families.sklearn_saved import load, predict, save  # noqa: F401  (its interface)

fit = forests.fitter(ExtraTreesRegressor, ExtraTreesClassifier)
