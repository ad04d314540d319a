import hashlib
from pathlib import Path

import numpy as np

from trialfuse.survivors import make_survivors, write_survivors

# sha256 of X and y bytes written by the project's reference script for --rows 2000 --seed 7
REFERENCE_SHA256 = "cbd4b58a658b6db82f13e39bd967cd532ce55c8455c7f3c92f4ba4b909139766"


def test_same_values_as_the_reference_script():
    X, y, names = make_survivors(2000, seed=7)
    assert X.shape == (2000, 62) and y.shape == (2000,)
    assert hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest() == REFERENCE_SHA256
    assert names[0] == "f00" and names[-1] == "f61"


def test_other_seeds_give_other_tables():
    assert not np.array_equal(make_survivors(100, 0)[1], make_survivors(100, 1)[1])


def test_csv_and_npz_hold_the_same_table(tmp_path: Path):
    write_survivors(tmp_path / "t.npz", rows=50, seed=3)
    write_survivors(tmp_path / "t.csv", rows=50, seed=3)
    npz = np.load(tmp_path / "t.npz")
    csv = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(csv[:, :-1], npz["X"], rtol=1e-6)
    np.testing.assert_allclose(csv[:, -1], npz["y"], rtol=1e-6)
    assert open(tmp_path / "t.csv").readline().strip().endswith(",score")
