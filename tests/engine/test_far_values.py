"""Values far from the rest of their column: codes for "unknown" read as missing, stray values
held at a fence (trialfuse.far_values), and the NN reading them so (engine/input_coding.py)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from trialfuse import far_values

RNG = np.random.default_rng(0)


def with_codes(column: np.ndarray, share: float, *values: float, seed: int = 0) -> np.ndarray:
    column = column.copy()
    rows = np.random.default_rng(seed).choice(len(column), int(share * len(column)) * len(values), replace=False)
    for part, value in zip(np.array_split(rows, len(values)), values, strict=True):
        column[part] = value
    return column


def test_codes_are_repeated_extremes_beyond_the_others_fences():
    normal = RNG.normal(size=5000)
    assert far_values.codes(with_codes(normal, 0.01, -1e9)) == [-1e9]
    assert far_values.codes(with_codes(normal, 0.2, -1e9)) == [-1e9]  # a fifth of the rows: still a code
    assert far_values.codes(with_codes(RNG.uniform(0, 100, 5000), 0.01, -999, 9999)) == [-999, 9999]
    assert far_values.codes(with_codes(normal, 0.01, 1e9, 1e9 + 1)) == [1e9, 1e9 + 1]
    with_nan = with_codes(normal, 0.01, 99999)
    with_nan[::10] = np.nan
    assert far_values.codes(with_nan) == [99999]


def test_what_is_no_code():
    """A long tail, a value far out once, a top-coded cap next to the others, a 0/1 column, a
    column mostly one value, -1 just below a count's zero: none is a code."""
    tail = RNG.lognormal(0, 2, 20000)
    once = RNG.normal(size=5000)
    once[7] = 1e7
    capped = np.minimum(RNG.normal(50, 10, 5000), 70)
    sparse = np.where(RNG.random(5000) < 0.005, RNG.uniform(1, 1e6, 5000), 0.0)
    counts = with_codes(RNG.poisson(3, 5000).astype(float), 0.01, -1)
    for column in (tail, once, capped, RNG.integers(0, 2, 5000).astype(float), sparse, counts,
                   np.full(50, np.nan), np.zeros(0)):
        assert far_values.codes(column) == []


def test_fences_leave_real_values_alone_and_hold_a_stray_one():
    normal = RNG.normal(size=100_000)
    low, high = far_values.fences(normal)
    assert low < normal.min() and normal.max() < high and 15 < high < 18  # 16 standard deviations out
    tail = RNG.lognormal(0, 2, 100_000)
    assert 0 < np.mean(tail > far_values.fences(tail)[1]) < 0.002  # a long tail: 0.1% beyond, ordered by its log
    once = normal.copy()
    once[3] = 1e7
    assert far_values.fences(once)[1] < 20
    assert far_values.fences(np.r_[np.zeros(1000), 5.0]) == (-np.inf, np.inf)  # no spread in the middle
    assert far_values.fences(np.full(3, np.nan)) == (-np.inf, np.inf)


def test_the_nn_reads_a_code_as_missing_and_a_stray_value_at_its_fence(tmp_path):
    """InputCoding: a code's rows read as the column's missing rows do (the mean, its "missing"
    input 1), at training and at predict time, a column with codes and no NaN gets a "missing"
    input; a stray value reads as its fence, and the mean and std are those of the held values;
    the kept and exported model read raw rows alike; a model kept before codes and fences loads."""
    import torch

    from trialfuse.engine.families import mlp
    from trialfuse.engine.input_coding import InputCoding

    n = 1000
    X = np.column_stack([with_codes(RNG.normal(size=n), 0.02, -999.0), RNG.normal(size=n)])
    X[5, 1] = 1e7
    coding = InputCoding.of(X)
    assert coding.code_columns.tolist() == [0] and coding.code_values.tolist() == [-999.0]
    assert coding.missing.tolist() == [0] and coding.width == 3
    coded = coding.apply(X)
    code_rows = X[:, 0] == -999
    np.testing.assert_array_equal(coded[:, 2], code_rows)  # the "missing" input
    np.testing.assert_allclose(coded[code_rows, 0], 0.0, atol=1e-12)  # imputed with the mean
    real = X[~code_rows, 0]
    assert coding.x_mean[0] == pytest.approx(real.mean()) and coding.x_std[0] == pytest.approx(real.std())
    held = np.clip(X[:, 1], coding.x_low[1], coding.x_high[1])
    assert held[5] == coding.x_high[1] < 20 and (held == X[:, 1]).sum() == n - 1
    np.testing.assert_allclose(coded[:, 1], (held - held.mean()) / held.std(), atol=1e-9)
    new = np.array([[-999.0, 1e9], [np.nan, -1e9]])  # at predict time: a code, a value past either fence
    np.testing.assert_allclose(coding.apply(new), [[0, (coding.x_high[1] - held.mean()) / held.std(), 1],
                                                   [0, (coding.x_low[1] - held.mean()) / held.std(), 1]], atol=1e-8)

    y = np.where(code_rows, 0.0, X[:, 0]) + X[:, 1]
    fitted = mlp.fit({"hidden_layers": [8], "epochs": 3}, X, y, seed=0, dtype=torch.float64)
    direct = mlp.predict(fitted.model, X)
    kept = tmp_path / mlp.keep(fitted.model, tmp_path)
    np.testing.assert_allclose(mlp.predict(mlp.load(kept), X), direct, atol=1e-12)
    exported = mlp.load(tmp_path / mlp.publish(kept, tmp_path, "fold-0"))
    np.testing.assert_allclose(mlp.predict(exported, X), direct, atol=1e-12)
    np.testing.assert_allclose(mlp.predict(exported, new), mlp.predict(fitted.model, new), atol=1e-12)

    plain = mlp.fit({"hidden_layers": [8], "epochs": 3}, X[:, [1]], y, seed=0, dtype=torch.float64).model
    saved = torch.load(str(tmp_path / mlp.keep(plain, tmp_path)), weights_only=True)
    for key in ("code_columns", "code_values", "x_low", "x_high"):  # as a model kept before them was written
        del saved["state"][key]
    torch.save(saved, tmp_path / "old.kept")
    np.testing.assert_allclose(mlp.predict(mlp.load(tmp_path / "old.kept"), X[:5, [1]]),  # row 5: past the fence
                               mlp.predict(plain, X[:5, [1]]), atol=1e-12)


@pytest.mark.parametrize("damage", ["a code in 1% of the rows", "one stray value"])
def test_the_network_learns_through_codes_and_stray_values(damage):
    """A target set by four numbers; a code for "unknown" (-1e9 in 1% of the rows) in the
    strongest one or a single typo (1e7) there: the network still fits the other rows nearly as
    well as on the clean table (before: R² 0.35 with the code, a CV R² of -1e10 with the typo)."""
    from trialfuse.engine.families import mlp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    y = X @ [2.0, 1.0, -1.0, 0.5] + 0.1 * rng.normal(size=3000)
    damaged = X.copy()
    if damage == "one stray value":
        damaged[11, 0] = 1e7
    else:
        damaged[:, 0] = with_codes(X[:, 0], 0.01, -1e9)
    clean_rows = np.flatnonzero((damaged == X).all(axis=1))
    test = clean_rows[clean_rows >= 2000]
    params = {"hidden_layers": [32], "learning_rate": 3e-3, "batch_size": 256, "epochs": 15}
    scores = [r2_score(y[test], mlp.predict(mlp.fit(params, data[:2000], y[:2000], seed=0).model, data[test]))
              for data in (X, damaged)]
    assert scores[1] > 0.97 and scores[1] > scores[0] - 0.02, scores
