"""What every tree family shares: a generous round cap, and early stopping on the fold's
validation rows instead of a searched round count, so trials spend their time on shapes
that matter. The final retrain runs the mean of the folds' best round counts."""
from __future__ import annotations

import numpy as np

MAX_ROUNDS = 2000  # boosting rounds at most, per fold
EARLY_STOPPING_ROUNDS = 50  # rounds without a better validation score before a fold stops
SMALLEST_MEAN = 1e-6  # a Poisson fit starts at a mean at least this (its log is taken)


def count_mean(y: np.ndarray) -> float:
    """Where a Poisson fit starts: the training counts' mean. Left to themselves XGBoost 2.1
    started counts of mean 150 at 1e32 (from mean 180 its trials failed: "Check failed:
    !std::isinf(base_score)"; at 133 they ran 2,000 rounds to an R² of -1.7e27) and CatBoost at
    0, where a fold holding a count of 60,000 stopped after one tree (LightGBM and scikit-learn
    start from the mean themselves)."""
    return max(float(np.mean(y)), SMALLEST_MEAN)
