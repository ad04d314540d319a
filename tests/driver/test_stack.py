"""The stack (driver.stack): known answers, an honest out-of-fold score, and served as fitted."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from trialfuse.blend import member_weights, serve, stack_features
from trialfuse.driver import stack
from trialfuse.task import NUMBERS, Kind, Task


def _folds(y, k=5, strata=None):
    splitter = StratifiedKFold(k, shuffle=True, random_state=0) if strata is not None else KFold(
        k, shuffle=True, random_state=0)
    return list(splitter.split(np.zeros((len(y), 1)), strata))


def test_a_known_blend_is_recovered_and_a_useless_input_dropped():
    rng = np.random.default_rng(0)
    a, b, useless = rng.normal(size=(3, 2000))
    y = 0.5 + 0.3 * a + 0.9 * b + rng.normal(scale=0.01, size=2000)
    found = stack.fit(np.stack([a, useless, b]), y, _folds(y), NUMBERS)
    assert found.inputs == [0, 2]  # the useless one is left out (input 0 is kept whatever it weighs)
    np.testing.assert_allclose(found.weights, [0.3, 0.9], atol=0.005)
    assert found.served["intercept"] == pytest.approx(0.5, abs=0.005) and found.oof_score > 0.999
    served = serve([a, b], found.weights, found.served)
    np.testing.assert_allclose(served, 0.5 + 0.3 * a + 0.9 * b, atol=0.01)


def test_a_counts_stack_is_served_no_lower_than_zero_and_scored_so():
    """Members that shrink toward the mean teach the stack a weight above 1 and an intercept
    below 0, which takes rows whose members are near their floor below 0: a count is never
    negative, so the served prediction stops at 0 (closer to every count than any value below
    it), out of fold as on the holdout; numbers of another kind keep the line as fitted."""
    rng = np.random.default_rng(3)
    signal = rng.choice([0.0, 4.0], size=3000)
    y = rng.poisson(signal).astype(np.float64)
    member = 1.0 + 0.5 * signal + rng.normal(scale=0.05, size=3000)
    counts = Task(counts=True)
    found = stack.fit(member[None], y, _folds(y), counts)
    assert found.weights[0] > 1.5 and found.served["intercept"] < -1.5
    served = serve([member], found.weights, found.served)
    line = found.weights[0] * member + found.served["intercept"]
    assert (line < 0).sum() > 500 and served.min() == 0.0
    np.testing.assert_allclose(served, np.maximum(line, 0.0))
    assert found.oof.min() == 0.0  # its out-of-fold score is the served one's
    plain = stack.fit(member[None], y, _folds(y), NUMBERS)
    assert "floor" not in plain.served and serve([member], plain.weights, plain.served).min() < 0


def test_its_out_of_fold_score_is_honest_on_noise():
    """Eight noise inputs fit noise in sample, but each row's inner out-of-fold prediction comes
    from a stack that never saw it: the score stays at or below knowing nothing."""
    rng = np.random.default_rng(1)
    inputs, y = rng.normal(size=(8, 300)), rng.normal(size=300)
    found = stack.fit(inputs, y, _folds(y), NUMBERS)
    assert found.oof_score < 0.0


def test_a_class_stack_recalibrates_and_is_served_as_fitted():
    """Two classes: an overconfident but well-ranked model and a weak one; the stack's log-loss
    beats the better input's, and blend.serve (the standardization folded into the coefficients)
    gives scikit-learn's own probabilities."""
    rng = np.random.default_rng(2)
    score = rng.normal(size=3000)
    y = (score + rng.normal(scale=0.8, size=3000) > 0).astype(np.float64)
    sharp = 1 / (1 + np.exp(-4 * score))  # ranks well, far too sure
    weak = 1 / (1 + np.exp(-(0.3 * score + rng.normal(scale=1.0, size=3000))))
    task = Task(Kind.BINARY, (0, 1), "log_loss")
    predictions = np.stack([np.column_stack([1 - p, p]) for p in (sharp, weak)])
    found = stack.fit(predictions, y, _folds(y, strata=y), task)
    assert found.oof_score > task.score(y, predictions[0]) + 0.05
    fitted = stack.class_stack().fit(stack_features(predictions), y.astype(int))
    np.testing.assert_allclose(serve(list(predictions), found.weights, found.served),
                               fitted.predict_proba(stack_features(predictions)), atol=1e-9)


def test_under_balanced_class_weights_the_stack_keeps_the_rare_class_weighed_as_the_members_did():
    """The members trained with "balanced" weights; a stack fit on unweighted log-loss pulled
    every probability back to the 4% base rate (a run's mean P(yes) 0.038, 2 of 14 rare rows found)."""
    rng = np.random.default_rng(4)
    score = rng.normal(size=4000)
    y = (score + rng.normal(scale=0.7, size=4000) > 1.9).astype(np.float64)  # about 4% ones
    member = 1 / (1 + np.exp(-(2.0 * score - 2.5)))
    predictions = np.stack([np.column_stack([1 - member, member])])
    shares = {}
    for weight in ("none", "balanced"):
        task = Task(Kind.BINARY, (0, 1), "log_loss", weight)
        found = stack.fit(predictions, y, _folds(y, strata=y), task)
        shares[weight] = float(serve(list(predictions), found.weights, found.served)[:, 1].mean())
    assert shares["none"] == pytest.approx(y.mean(), abs=0.01)  # unweighted: the base rate
    assert shares["balanced"] > 0.15  # weighted as the members were: the rare class much more often


def test_three_classes_are_served_as_fitted():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=900).astype(np.float64)
    raw = rng.dirichlet(np.ones(3), size=(2, 900)) + 0.5 * np.eye(3)[y.astype(int)]
    predictions = raw / raw.sum(axis=2, keepdims=True)
    task = Task(Kind.MULTICLASS, (0, 1, 2), "log_loss")
    found = stack.fit(predictions, y, _folds(y, strata=y), task)
    served = serve(list(predictions), found.weights, found.served)
    fitted = stack.class_stack().fit(stack_features(predictions), y.astype(int))
    np.testing.assert_allclose(served, fitted.predict_proba(stack_features(predictions)), atol=1e-9)
    assert np.asarray(found.served["coef"]).shape == (3, 6)


def test_the_inputs_are_the_winner_each_familys_best_then_the_ensembles_members():
    scores = [0.5, 0.7, 0.6, 0.4, 0.65]
    families = ["lightgbm", "lightgbm", "xgboost", "catboost", "xgboost"]
    assert stack.inputs(scores, families, chosen=[1, 4, 0], first=1) == [1, 4, 3, 0]


def test_the_class_stack_fits_with_blas_on_one_thread(monkeypatch):
    """Its matrices are narrow: on 2 cores OpenBLAS's two threads made its fits 3x slower, time
    the budget then lacked for the ensemble's retrain (carrier at 60 s)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    original = stack.class_stack

    def recording():
        model = original()
        fit = model.fit

        def fit_and_record(*args, **kwargs):
            seen.append({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})
            return fit(*args, **kwargs)

        model.fit = fit_and_record
        return model

    monkeypatch.setattr(stack, "class_stack", recording)
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, size=300).astype(np.float64)
    predictions = rng.dirichlet(np.ones(3), size=(2, 300))
    with threadpool_limits(limits=2, user_api="blas"):  # as on 2 cores, so it can fail on one too
        stack.fit(predictions, y, _folds(y, strata=y), Task(Kind.MULTICLASS, (0, 1, 2), "log_loss"))
    assert seen and all(threads == {stack.BLAS_THREADS} for threads in seen)


def test_the_report_shows_a_class_stacks_coefficients_not_its_placeholder_weights():
    """A class stack's members carry 1/n as `weight` (the stack does not read it); the report
    showed those as the ensemble's weights beside coefficients that were partly negative."""
    binary = {"link": "softmax", "coef": [[0.9, -0.167, 0.3]], "intercept": [0.1]}
    assert member_weights([1 / 3] * 3, binary) == ("coefficient", [0.9, -0.167, 0.3])
    three = {"link": "softmax", "coef": [[1.0, 0.0, -1.0, 0.5, 0.5, 0.5]] * 3, "intercept": [0.0] * 3}
    assert member_weights([0.5, 0.5], three) == ("sum of |coefficients|", [6.0, 4.5])
    assert member_weights([0.7, 0.3], {"link": "identity", "intercept": 0.2}) == ("weight", [0.7, 0.3])
    assert member_weights([0.7, 0.3]) == ("weight", [0.7, 0.3])

