"""What every tree family shares: a generous round cap, and early stopping on the fold's
validation rows instead of a searched round count, so trials spend their time on shapes
that matter. The final retrain runs the mean of the folds' best round counts."""
from __future__ import annotations

MAX_ROUNDS = 2000  # boosting rounds at most, per fold
EARLY_STOPPING_ROUNDS = 50  # rounds without a better validation score before a fold stops
