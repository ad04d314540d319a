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

    def contributions(self, X: np.ndarray) -> np.ndarray | None:
        """Exact per-row, per-feature contributions (TreeSHAP) [rows, features], the members'
        weighted sum (SHAP values add up as the predictions do); None unless every member's
        library computes them exactly."""
        modules = [family_module(m.family) for m in self.members]
        if not all(hasattr(module, "contributions") for module in modules):
            return None
        return sum(m.weight * module.contributions(m.model, X) for m, module in zip(self.members, modules,
                                                                                     strict=True))
