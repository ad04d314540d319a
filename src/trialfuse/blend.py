"""An ensemble's prediction from its members' predictions, and a member's from its K fold
models': one function each for the run's holdout score, `trialfuse predict` and the
explanation, so all three agree to the bit. Library-free, so every layer may use it."""
from __future__ import annotations

from typing import Any

import numpy as np

PROBABILITY_FLOOR = 1e-15  # a stack reads log-probabilities clipped here (log-loss's own floor)
IDENTITY, SOFTMAX = "identity", "softmax"  # a stack's link: numbers as they are, or class probabilities


def combine(predictions, weights) -> np.ndarray:
    """The weighted sum of the members' predictions (values [rows], or class probabilities
    [rows, K]), in member order."""
    out = np.zeros(np.shape(predictions[0]), dtype=np.float64)
    for member, weight in zip(predictions, weights, strict=True):
        out += float(weight) * np.asarray(member, dtype=np.float64)
    return out


def fold_mean(predictions) -> np.ndarray:
    """A model served as its K fold models (no refit): their equal-weight mean, in fold order."""
    return combine(predictions, [1.0 / len(predictions)] * len(predictions))


def serve(predictions, weights, stack: dict[str, Any] | None = None) -> np.ndarray:
    """What a saved model predicts from its members' predictions: their weighted average, or
    under a stack (driver.stack) its second-level model: for numbers the members' weighted sum
    plus the stack's intercept (its weights are the members' weights), no lower than its
    `floor` where it has one (a count's: 0), for classes the softmax of a linear map of their
    log-probabilities."""
    if stack is None:
        return combine(predictions, weights)
    if stack["link"] == IDENTITY:
        line = combine(predictions, weights) + float(stack["intercept"])
        return line if stack.get("floor") is None else np.maximum(line, float(stack["floor"]))
    logits = stack_features(predictions) @ np.asarray(stack["coef"], dtype=np.float64).T \
        + np.asarray(stack["intercept"], dtype=np.float64)
    if logits.shape[1] == 1:  # two classes: one logit, the second class's log-odds
        logits = np.column_stack([np.zeros(len(logits)), logits[:, 0]])
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def stack_features(predictions) -> np.ndarray:
    """A class stack's inputs [rows, features]: each member's log-odds of the second class (two
    classes) or its K log-probabilities, side by side in member order."""
    columns = []
    for member in predictions:
        logp = np.log(np.clip(np.asarray(member, dtype=np.float64), PROBABILITY_FLOOR, 1.0))
        columns.append(logp[:, 1:] - logp[:, :1] if logp.shape[1] == 2 else logp)
    return np.hstack(columns)


def member_weights(weights, stack: dict[str, Any] | None = None) -> tuple[str, list[float]]:
    """(what it is, one value per member) to show how much each member counts: its weight, or
    under a class stack (whose members' `weights` are placeholders) its coefficient on its
    log-odds (two classes; it may be negative) or the size of its K coefficients (sum of |c|)."""
    if stack is None or stack["link"] != SOFTMAX:
        return "weight", [float(w) for w in weights]
    coef = np.asarray(stack["coef"], dtype=np.float64)
    per = coef.shape[1] // len(weights)  # a member's features: 1 log-odds, or K log-probabilities
    if per == 1:
        return "coefficient", coef[0].tolist()
    return "sum of |coefficients|", [float(np.abs(coef[:, i * per:(i + 1) * per]).sum()) for i in range(len(weights))]

