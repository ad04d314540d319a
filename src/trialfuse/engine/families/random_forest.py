"""scikit-learn's random forest: bootstrapped rows, the best split among a share of the features.
Trained, served and saved as every forest is (forests.py, sklearn_saved.py)."""
from __future__ import annotations

from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from trialfuse.engine.families import forests
from trialfuse.engine.families.sklearn_saved import load, predict, save  # noqa: F401  (its interface)

fit = forests.fitter(RandomForestRegressor, RandomForestClassifier)
