"""A saved best model as one predictor: a single model or an ensemble's weighted members,
each one refit model or its K fold models, read back with their own libraries, for
`trialfuse predict` and the explanation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trialfuse.blend import IDENTITY, fold_mean, serve
from trialfuse.catalog import screens
from trialfuse.engine.column_screen import columns_file
from trialfuse.engine.families import family_module
from trialfuse.errors import UserError
from trialfuse.task import NUMBERS, Objective, Task


@dataclass
class Member:
    family: str
    models: list[Any]  # one refit model, or the K fold models served as their mean
    weight: float
    task: Task = NUMBERS  # the run's, as this model trained for it (Task.trained_by: its objective)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Values [rows], or class probabilities [rows, K]."""
        module = family_module(self.family)
        return fold_mean([self.task.probabilities(module.predict(model, X))  # one model: itself, to the bit
                          for model in self.models])

    def contributions(self, X: np.ndarray) -> np.ndarray:
        module = family_module(self.family)
        return sum(module.contributions(model, X) for model in self.models) / len(self.models)


class SavedModel:
    """best_model/ read back: `predict(X)` is what the run scored on the holdout (values, or
    class probabilities [rows, K] in the order of `task.classes`)."""

    def __init__(self, directory: str | Path, metadata: dict[str, Any]):
        listed = metadata.get("members") or [{**metadata, "weight": 1.0}]
        width = len(metadata.get("feature_names") or ())
        missing = [f for m in listed for f in files(m) + columns_files(m, width) if not (Path(directory) / f).is_file()]
        if missing:  # a library's own error for it reads as a fault of ours
            raise UserError(f"the saved model in {directory} lacks {missing[0]}"
                            f"{f' and {len(missing) - 1} more file(s)' if len(missing) > 1 else ''}: "
                            "damaged or partly copied; copy best_model/ whole")
        self.task = Task.from_json(metadata.get("task"))
        self.members = [Member(m["family"], [family_module(m["family"]).load(Path(directory) / f) for f in files(m)],
                               float(m["weight"]), self.task.trained_by(m.get("params") or {})) for m in listed]
        self.stack = metadata.get("stack")  # an ensemble's second level, where a stack won

    def predict(self, X: np.ndarray) -> np.ndarray:
        return serve([m.predict(X) for m in self.members], [m.weight for m in self.members], self.stack)

    def columns_read(self) -> np.ndarray | None:
        """The columns some member's model reads (its screened columns, those its trees split on:
        Screening.columns_read), where every model tells; None: every column. Shuffling any other
        leaves every prediction as it is, so permutation importance skips them: on 5,000 columns
        it needed 210 s for 100 rows."""
        read = [family_module(m.family).columns_read(model) for m in self.members for model in m.models]
        if any(r is None for r in read):
            return None
        return np.unique(np.concatenate(read)).astype(np.int64)

    @property
    def has_contributions(self) -> bool:
        """Whether every member's library computes SHAP values exactly (the tree families) and
        they add up to the prediction's (not under a class stack's softmax, nor through a Poisson
        model's log)."""
        return self.without_contributions is None

    @property
    def without_contributions(self) -> str | None:
        """Why this model has no exact SHAP values, in words (None: it has them)."""
        if not all(hasattr(family_module(m.family), "contributions") for m in self.members):
            return "not every member is a tree model"
        if self.stack is not None and self.stack["link"] != IDENTITY:
            return "a class stack's softmax over its members' log-probabilities does not add their SHAP values up"
        if any(m.task.objective == Objective.POISSON for m in self.members):
            return "a Poisson model's SHAP values add up to the log of its prediction, not to the prediction"
        return None

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact per-row, per-feature contributions (TreeSHAP) [rows, features], the members'
        weighted sum (SHAP values add up as the predictions do; a fold-served member's are its
        fold models' mean; where a count's stack holds a row at 0, to the sum it held there)."""
        return sum(m.weight * m.contributions(X) for m in self.members)


def columns_files(entry: dict[str, Any], width: int) -> list[str]:
    """A screened model's columns files (column_screen.columns_file), without which its library
    would read the table's every column; none where its params screen no column."""
    return [columns_file(f).as_posix() for f in files(entry)] if screens(entry.get("params"), width) else []


def files(entry: dict[str, Any]) -> list[str]:
    """A model's files relative to best_model/: `model_files` (its K fold models) or `model_file`."""
    return list(entry.get("model_files") or [entry["model_file"]])
