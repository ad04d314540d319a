"""A saved best model as one predictor: a single model or an ensemble's weighted members,
read back with their own libraries, for `trialfuse predict` and the explanation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trialfuse.blend import combine
from trialfuse.engine.families import family_module


@dataclass
class Member:
    family: str
    model: Any
    weight: float


class SavedModel:
    """best_model/ read back: `predict(X)` is what the run scored on the holdout."""

    def __init__(self, directory: str | Path, metadata: dict[str, Any]):
        listed = metadata.get("members") or [{"family": metadata["family"], "model_file": metadata["model_file"],
                                              "weight": 1.0}]
        self.members = [Member(m["family"], family_module(m["family"]).load(Path(directory) / m["model_file"]),
                               float(m["weight"])) for m in listed]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return combine([family_module(m.family).predict(m.model, X) for m in self.members],
                       [m.weight for m in self.members])

    @property
    def has_contributions(self) -> bool:
        """Whether every member's library computes SHAP values exactly (the tree families)."""
        return all(hasattr(family_module(m.family), "contributions") for m in self.members)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact per-row, per-feature contributions (TreeSHAP) [rows, features], the members'
        weighted sum (SHAP values add up as the predictions do)."""
        return sum(m.weight * family_module(m.family).contributions(m.model, X) for m in self.members)
